// What the policy kinds share: the reference to what a policy attaches to (a route, one
// rule of it, or a Service), and percentages.
import { Type, type Static } from '@sinclair/typebox';
import { kind, ObjectName, SectionName, strict } from './common.js';

// Gateway API LocalPolicyTargetReferenceWithSectionName: a route (optionally one of
// its rules by name) or a Service in the policy's namespace.
export const PolicyTargetRef = Type.Object(
  {
    group: Type.String({
      pattern: '^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$',
      maxLength: 253,
      description: 'an API group: "" (core, for a Service) or gateway.networking.k8s.io (for an HTTPRoute)',
    }),
    kind: kind(),
    name: ObjectName,
    sectionName: Type.Optional(SectionName),
  },
  strict,
);

/** A percentage from 0 to 100. */
export const percent = () => Type.Integer({ minimum: 0, maximum: 100, description: 'a percentage from 0 to 100' });

/** A policy's target: a route (optionally one rule, by name) or a Service. */
export type PolicyTargetRef = Static<typeof PolicyTargetRef>;

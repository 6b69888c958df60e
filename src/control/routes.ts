// TEMPORARY: the route compiler moved to compile/routes.ts. This re-export only keeps the
// test/proxy files that import the old path building until they are updated (test/proxy
// is being rewritten on another branch); delete it then.
export * from './compile/routes.js';

// The one shape of a proxy layer, and the builder that stacks them (tower's Layer and
// ServiceBuilder, linkerd2-proxy's `push`). A layer sees each request on the way in
// (`request`, then `next` for the layers below) and, if it has a `back`, each outcome
// of the attempts below it on the way out, innermost first (Envoy's decode and encode
// paths through the same filters). Outcomes a layer does not take it passes to `outer`.
//
// Types carry the layer order: a layer is `Layer<In, Out>`, taking exchanges with the
// decisions `In` has and passing on ones with `Out` (the route, the backend: see
// decisions.ts). `Stack.push` accepts only a layer whose `In` the stack so far gives,
// so "this ran before me" is checked by the compiler, not asserted at run time.
import { edge, type Back, type Exchange, type Handler } from './exchange.js';
import type { Outcome } from './outcome.js';

export interface Stage<In extends Exchange> {
  readonly request: Handler<In>;
  /** The way back for exchanges that passed this layer; returns `outer(ex, o)` for what it does not take. */
  readonly back?: (ex: In, o: Outcome, outer: Back) => boolean;
}

/** A layer: given the handler of the layers below, this layer's stage. Built once per stack and codec. */
export type Layer<In extends Exchange = Exchange, Out extends Exchange = In> = (next: Handler<Out>) => Stage<In>;

/** A layer as the builder stores it; the push that stored it checked its types. */
type AnyLayer = Layer<Exchange, Exchange>;

/**
 * A stack of layers, outermost first, with the exchanges the layers so far hand on
 * typed `E`. Immutable: `push` returns a new stack, so one role's stack can be built
 * on (a gateway's) without changing it.
 */
export class Stack<E extends Exchange> {
  readonly #layers: readonly AnyLayer[];

  private constructor(layers: readonly AnyLayer[]) {
    this.#layers = layers;
  }

  /** An empty stack: exchanges as a listener makes them. */
  static start(): Stack<Exchange> {
    return new Stack<Exchange>([]);
  }

  /** This stack with `layer` below its layers. */
  push<Out extends Exchange>(layer: Layer<E, Out>): Stack<Out> {
    return new Stack<Out>([...this.#layers, layer as unknown as AnyLayer]);
  }

  /**
   * The entry handler of the stack over `terminal` (the codec that sends an exchange and
   * reports its outcomes with `ex.report`). Each layer with a way back, as an exchange
   * passes it, becomes the innermost handler of its outcomes (`ex.back`), so an outcome
   * goes back only through the layers the exchange reached.
   */
  build(terminal: Handler<E>): Handler {
    const layers = this.#layers;
    const stages: Stage<Exchange>[] = new Array(layers.length);
    /** backs[i]: the outcome handler of layer i and every layer outside it; filled once the stages exist. */
    const backs: Back[] = new Array(layers.length);
    // Stages innermost first: each is given the entry handler of the layers below it.
    let next = terminal as Handler;
    for (let i = layers.length - 1; i >= 0; i--) {
      const stage = layers[i]!(next);
      stages[i] = stage;
      if (stage.back === undefined) {
        next = stage.request;
        continue;
      }
      // A layer with a way back records it as an exchange passes it.
      const request = stage.request;
      const at = i;
      next = (ex) => {
        ex.back = backs[at]!;
        request(ex);
      };
    }
    // The way back outermost first: each layer's outer handler exists before it.
    let outer: Back = edge;
    for (let i = 0; i < layers.length; i++) {
      const back = stages[i]!.back;
      if (back !== undefined) {
        const o = outer;
        outer = (ex, outcome) => back(ex, outcome, o);
      }
      backs[i] = outer;
    }
    return next;
  }
}

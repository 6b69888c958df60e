// The behaviour suite (cases.ts) with HTTP/1.1 clients: the app is reached in HTTP/1.1.
import { behaviourSuite } from './cases.js';

behaviourSuite('HTTP/1.1');

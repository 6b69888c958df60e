// The behaviour suite (cases.ts) with HTTP/2 clients (h2c, prior knowledge): HTTP/2 all
// the way to the app, which answers both protocols on one port.
import { behaviourSuite } from './cases.js';

behaviourSuite('HTTP/2');

// TEMPORARY: the compiler moved to compile/compiler.ts. This re-export only keeps the
// test/proxy files that import the old path building until they are updated (test/proxy
// is being rewritten on another branch); delete it then.
export * from './compile/compiler.js';

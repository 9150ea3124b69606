// The environment the native harness (`sluice-sdk/testing`) gives a transform: state is a
// Map of byte-string ids (one char per byte) to values, timers a Set of `${at}:${id}`.
export const ENV = { config: {}, outputs: ['output'], tables: {}, logs: [], state: new Map(), timers: new Set() };

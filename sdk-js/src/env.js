// The environment the native harness (`sluice-sdk/testing`) gives a transform.
export const ENV = { config: {}, outputs: ['output'], tables: {}, logs: [] };

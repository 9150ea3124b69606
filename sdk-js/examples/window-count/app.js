// The component's entry: binds the host and state imports and exports the transform
// (built with `scripts/build-js-plugin --stateful`).
import * as host from 'sluice:transform/host@0.2.2';
import * as stateHost from 'sluice:transform/state@0.2.2';
import { bindHost, bindState, transform } from 'sluice-sdk';
import { close, count, setup } from './window-count.js';

bindHost(host);
bindState(stateHost);
export const { init, process, onTimers } = transform(count, { init: setup, onTimer: close });

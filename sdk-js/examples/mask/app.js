// The component's entry: binds the host imports and exports the transform.
import * as host from 'sluice:transform/host@0.2.1';
import { bindHost, transform } from 'sluice-sdk';
import { mask, setup } from './mask.js';

bindHost(host);
export const { init, process, onTimers } = transform(mask, { init: setup });

// The component's entry: binds the host imports and exports the transform.
import * as host from 'sluice:transform/host@0.2.2';
import { bindHost, transform } from 'sluice-sdk';
import { filter, setup } from './filter.js';

bindHost(host);
export const { init, process, onTimers } = transform(filter, { init: setup });

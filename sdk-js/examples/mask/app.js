// The component's entry: binds the host imports and exports the transform.
import * as host from 'sluice:transform/host@0.2.2';
import * as textHost from 'sluice:transform/text@0.2.2';
import { bindHost, bindText, transformBatch } from 'sluice-sdk';
import { maskBatch, setup } from './mask.js';

bindHost(host);
bindText(textHost);
export const { init, process, onTimers } = transformBatch(maskBatch, { init: setup });

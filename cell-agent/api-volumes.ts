import express, { type Router } from 'express';
import { HttpError, type PutVolumesReply, type PutVolumesRequest } from '../lib/cell-agent-api.ts';
import { ConfigError, validateConfig } from '../lib/config-file.ts';
import { currentPod } from './api-pod.ts';
import type { Cell } from './cell.ts';
import { checkVolumeUpdate, VolumesUnavailableError, VolumeUpdateError } from './volumes.ts';

const bodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['uid', 'volumes'],
  properties: {
    uid: { type: 'string', minLength: 1 },
    volumes: {
      type: 'object',
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        required: ['files'],
        properties: { files: { type: 'object', additionalProperties: { type: 'string' } } },
      },
    },
  },
};

/**
 * `PUT /v1/pod/volumes`: new content for resolved volumes of the running pod (rotated service
 * account tokens, changed ConfigMaps and Secrets), each volume swapped atomically.
 */
export function volumeRoutes(cell: Cell): Router {
  const r = express.Router();
  r.put('/v1/pod/volumes', express.json({ limit: '32mb' }), async (req, res) => {
    let body: PutVolumesRequest;
    try {
      body = validateConfig<PutVolumesRequest>(req.body, bodySchema, 'body');
    } catch (e) {
      if (e instanceof ConfigError) throw new HttpError(400, 'BadRequest', e.message, e.field);
      throw e;
    }
    const pod = currentPod(cell);
    if (pod.uid !== body.uid)
      throw new HttpError(
        409,
        'Conflict',
        `pod uid ${body.uid} is not the pod on this cell (uid ${pod.uid}); its volumes cannot be updated here`,
        'uid',
      );
    try {
      checkVolumeUpdate(pod.pod, body.volumes);
      const changed = await pod.replaceVolumeFiles(body.volumes);
      if (changed.length) pod.log.info({ pod: pod.uid, volumes: changed }, 'volume files replaced');
      const reply: PutVolumesReply = { uid: pod.uid, changed };
      res.json(reply);
    } catch (e) {
      if (e instanceof VolumeUpdateError) throw new HttpError(400, 'BadRequest', e.message, e.field);
      if (e instanceof VolumesUnavailableError) throw new HttpError(409, 'Conflict', e.message);
      throw e;
    }
  });
  return r;
}

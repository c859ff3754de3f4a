/** What the agent needs of an image once pulled: its config and a read-only unpacked root filesystem. */
export interface PulledImage {
  reference: string;
  digest: string;
  imageId: string;
  config: {
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    Env?: string[];
    WorkingDir?: string;
    User?: string;
    StopSignal?: string;
  };
  /** Read-only unpacked filesystem shared by containers; each container mounts an overlay on it. */
  rootfs: string;
  sizeBytes: number;
  /** Where the image came from: already in the store, the read-only cache, or a registry. */
  source?: 'store' | 'cache' | 'registry';
}

export interface PullOptions {
  /** `.dockerconfigjson` documents with registry credentials. */
  dockerConfigs?: string[];
  signal?: AbortSignal;
  /** The container's imagePullPolicy. */
  pullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
}

/** Where images come from: lib/oci's ImageStore in production. */
export interface ImageSource {
  pull(ref: string, opts?: PullOptions): Promise<PulledImage>;
}

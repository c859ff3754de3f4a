/** The emulator's ready line (stdout), read by the test support and the local lab. */
// A type alias, not an interface, so a parsed ready line (a string-keyed record) converts to it.
export type GceReadyLine = {
  pid: number;
  host: string;
  port: number;
  /** `http://<host>:<port>` */
  url: string;
  project: string;
  region: string;
  zones: string[];
  hypervisor: string;
  /** The cell address block and its gateway (the bridge's address; null bridge without netns). */
  network: { block: string; gateway: string; bridge: string | null };
  stateDir: string;
  /** `<url>/admin` */
  admin: string;
  /** `<url>/metrics` */
  metrics: string;
};

import type { Logger } from '../../lib/log.ts';
import type { HeartbeatConfig } from '../config.ts';
import type { Value } from '../report.ts';

export interface HeartbeatOptions {
  name: string;
  config: HeartbeatConfig;
  /** Accepts the report like `POST /report` does (validated, filtered, persisted). */
  submit: (body: unknown) => Promise<void>;
  log: Logger;
}

/**
 * Reports `value` every `intervalSeconds` with contiguous [start, end] windows, starting at agent
 * start rounded down to the second (ubbagent's heartbeat; a restart starts a new window).
 */
export class Heartbeat {
  private start: number;
  private timer: NodeJS.Timeout | null = null;
  private readonly value: Value;

  constructor(private readonly opts: HeartbeatOptions) {
    this.start = Math.floor(Date.now() / 1000) * 1000;
    const v = opts.config.value;
    this.value =
      v.int64Value !== undefined ? { int64Value: String(v.int64Value) } : { doubleValue: v.doubleValue! };
  }

  begin(): void {
    const interval = this.opts.config.intervalSeconds * 1000;
    this.timer = setInterval(() => void this.beat(), interval);
  }

  private async beat(): Promise<void> {
    const end = Date.now();
    const body = {
      name: this.opts.config.metric,
      startTime: new Date(this.start).toISOString(),
      endTime: new Date(end).toISOString(),
      value: this.value.int64Value !== undefined ? { int64Value: this.value.int64Value } : this.value,
      labels: this.opts.config.labels ?? {},
    };
    this.start = end;
    try {
      await this.opts.submit(body);
    } catch (e) {
      this.opts.log.error({ err: e, source: this.opts.name }, 'heartbeat report not accepted');
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}

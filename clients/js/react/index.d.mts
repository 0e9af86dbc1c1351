// Types for jobwire/react (index.mjs).
import type { ReactNode, ReactElement } from "react";
import type {
  ConnectOptions, ConnectionState, JobState, JobStatus, JobwireClient, JobwireError, Principal,
  TransportName,
} from "../dist/jobwire.mjs";

export type {
  ConnectOptions, ConnectionState, JobState, JobStatus, JobwireClient, JobwireError, Principal,
  TransportName,
};

export interface JobwireProviderProps {
  /** connect()'s options. A new object on each render is fine: the provider reconnects only
   *  when their values change; a token function is always called as the latest render gave it. */
  options?: ConnectOptions;
  /** Or a client of your own (from connect()): used as is, never closed by the provider. */
  client?: JobwireClient;
  children?: ReactNode;
}

/** One jobwire connection for every hook below it: opened on mount, closed on unmount. */
export declare function JobwireProvider(props: JobwireProviderProps): ReactElement;

export interface ConnectionStatus {
  /** "idle" until the provider has connected. */
  connection: ConnectionState;
  transport: TransportName | null;
  principal: Principal | null;
  /** The last `error` event, if any (e.g. code "unauthorized"). */
  error: JobwireError | null;
  /** True when the connection is shared with other tabs (SharedWorker). */
  shared: boolean;
  client: JobwireClient | null;
}

export interface JobView {
  /** The job's latest state; undefined until one is seen. */
  job: JobState | undefined;
  status: JobStatus | null;
  progress: number | null;
  /** completed, failed or cancelled. */
  done: boolean;
  connection: ConnectionState;
  transport: TransportName | null;
  principal: Principal | null;
  error: JobwireError | null;
}

export interface JobsView {
  /** Every job the connection follows, in the order first seen. */
  jobs: readonly JobState[];
  connection: ConnectionState;
  transport: TransportName | null;
  principal: Principal | null;
  error: JobwireError | null;
}

/** One job's live state; `jobId` may be null or undefined while not known yet. */
export declare function useJob(jobId: string | null | undefined): JobView;
/** Every job the provider's connection follows (by default, all the user may see). */
export declare function useJobs(): JobsView;
export declare function useConnection(): ConnectionStatus;
/** The provider's JobwireClient, for its events; null until it has connected. */
export declare function useJobwireClient(): JobwireClient | null;

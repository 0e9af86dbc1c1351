// A page as an app would write it with jobwire/react: one provider, a connection badge, the
// user's jobs (useJobs) and one job followed on its own (useJob). It also records every job
// event the client applied in window.jobwireEvents, for the test to check none is missing or
// repeated, and counts the clients it was given in window.jobwireClients (one per page, even
// under StrictMode's double mount).
import { useEffect, useState } from "react";
import { JobwireProvider, useConnection, useJob, useJobs, useJobwireClient } from "jobwire/react";
import { version, type JobState, type JobwireClient, type TransportName } from "jobwire";

export interface Settings {
  server: string;
  token: string;
  transports?: TransportName[];
  watch: string | null;
  shared: boolean;
}

declare global {
  interface Window {
    jobwireEvents: { jobId: string; seq: number }[];
    jobwireClients: number;
  }
}
window.jobwireEvents = [];
window.jobwireClients = 0;
const clientsSeen = new WeakSet<JobwireClient>();

export function App({ settings }: { settings: Settings }) {
  const [renders, setRenders] = useState(1);
  // A new options object and token function on every render: the provider must not reconnect.
  const options = {
    url: settings.server,
    token: () => settings.token,
    shared: settings.shared,
    ...(settings.transports ? { transports: settings.transports } : {}),
  };
  return (
    <JobwireProvider options={options}>
      <h1>Jobs <small>jobwire {version}</small></h1>
      <button id="rerender" data-renders={renders} onClick={() => setRenders((n) => n + 1)}>
        Render the app again
      </button>
      <Connection />
      <EventLog />
      {settings.watch && <Watched jobId={settings.watch} />}
      <JobList />
    </JobwireProvider>
  );
}

function Connection() {
  const { connection, transport, principal, shared } = useConnection();
  return (
    <p id="connection" data-state={connection} data-transport={transport ?? ""}
       data-shared={String(shared)} data-user={principal?.userId ?? ""}>
      {connection} via {transport ?? "nothing yet"}
    </p>
  );
}

function EventLog() {
  const client = useJobwireClient();
  if (client && !clientsSeen.has(client)) {
    clientsSeen.add(client);
    window.jobwireClients += 1;
  }
  useEffect(() => client?.on("update", (job: JobState) => {
    window.jobwireEvents.push({ jobId: job.jobId, seq: job.seq });
  }), [client]);
  return null;
}

function Watched({ jobId }: { jobId: string }) {
  const { status, progress, done, job } = useJob(jobId);
  return (
    <section id="watched" data-job={jobId} data-status={status ?? ""}
             data-progress={progress ?? ""} data-done={String(done)}>
      {jobId}: {status ?? "waiting"} {progress ?? 0}% {job?.currentOperation ?? ""}
    </section>
  );
}

function JobList() {
  const { jobs } = useJobs();
  return (
    <ul id="jobs" data-count={jobs.length}>
      {jobs.map((job) => (
        <li key={job.jobId} data-job={job.jobId} data-status={job.status}
            data-progress={job.progress}>
          <progress max={100} value={job.progress} /> {job.jobId} {job.status}
        </li>
      ))}
    </ul>
  );
}

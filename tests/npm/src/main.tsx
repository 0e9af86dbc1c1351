// The test app's entry: everything the page needs comes from its address, which the test
// writes: ?server=<jobwire serve URL>&token=<user token>[&transports=sse,poll][&watch=<jobId>]
// [&shared=false]
import { StrictMode, useState } from "react";
import { createRoot } from "react-dom/client";
import { App, type Settings } from "./App";
import type { TransportName } from "jobwire";

function settings(query: URLSearchParams): Settings {
  const server = query.get("server");
  const token = query.get("token");
  if (!server || !token) throw new Error("the page needs ?server=…&token=…");
  const transports = query.get("transports");
  return {
    server,
    token,
    transports: transports ? (transports.split(",") as TransportName[]) : undefined,
    watch: query.get("watch"),
    shared: query.get("shared") !== "false",
  };
}

// The app can be taken off the page (#unmount): its provider must then close the connection.
function Root({ settings }: { settings: Settings }) {
  const [mounted, setMounted] = useState(true);
  return (
    <>
      <button id="unmount" disabled={!mounted} onClick={() => setMounted(false)}>
        Close the app
      </button>
      {mounted && <App settings={settings} />}
    </>
  );
}

createRoot(document.getElementById("root")!).render(
  // StrictMode mounts every effect twice: the provider must still open one connection.
  <StrictMode>
    <Root settings={settings(new URLSearchParams(location.search))} />
  </StrictMode>,
);

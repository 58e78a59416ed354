//! The integration suite: one binary, the real server started in-process
//! for each test on its own port and database file.

// Starting servers and talking to them over HTTP.
mod helpers;
// A raw-TCP event stream client with a WHATWG parser.
mod sse_client;
// Expected against received events, printed side by side; JSON patterns.
mod expect;

// The fixture-driven scenarios of fixtures/scenarios/.
mod scenarios;
// Stream guarantees: the seam, other processes, slow readers, shutdown.
mod stream;
// The forum API: paging, sessions, CORS, text, health.
mod forum;
// The real binary killed with SIGKILL mid-write.
mod crash;
// The real binary: SIGTERM under load, two processes on one database.
mod process;
// Databases made by earlier (and later) releases.
mod upgrade;
// Property tests: bad input of every kind, and consistency after any calls.
mod properties;

//! Black-box tests through the public HTTP and WebSocket interface, against a server on
//! port 0 in this process (and, in `process`, the real binary).

mod helpers;

mod locations;
mod ops;
mod process;
mod readings;
mod resilience;
mod upstream;
mod ws;

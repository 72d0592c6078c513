#pragma once
// A memory-mapped file that shrinks while mapped (a corpus or checkpoint truncated or rewritten by
// someone else) raises SIGBUS at the next read of the lost pages. Without a handler the process
// dies with "Bus error" and nothing else; with it, one line says what happened, then exit 1.
namespace adaspan::cluster {

void report_bus_errors();

}  // namespace adaspan::cluster

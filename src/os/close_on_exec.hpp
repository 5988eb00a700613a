// os/close_on_exec.hpp — keeps sluice's sockets out of the processes a handler starts.
//
// Asio opens and accepts sockets without close-on-exec (it calls socket() and accept(), not
// SOCK_CLOEXEC / accept4). A handler that runs a subprocess (ffmpeg, a Python script) would hand it
// every socket of the worker: the job API's listening socket among them, so the port stays bound
// and connections queue on it after the worker has exited. Every socket sluice opens or accepts is
// marked at once. A fork() in another thread between the open and the mark can still inherit it;
// that window is a few instructions long.
//
// Thread-safe (one fcntl per call).
#pragma once

namespace sluice::os {

/// Sets FD_CLOEXEC on `descriptor`; a descriptor that is not open is left alone.
void SetCloseOnExec(int descriptor) noexcept;

/// Whether FD_CLOEXEC is set on `descriptor` (tests).
bool IsCloseOnExec(int descriptor) noexcept;

}  // namespace sluice::os

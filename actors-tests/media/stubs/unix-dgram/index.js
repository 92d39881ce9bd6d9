'use strict';
// Stub of the native `unix-dgram` module: janode imports it for its Unix-socket
// transport, which the media test never uses (it speaks WebSocket).
exports.createSocket = function createSocket() {
  throw new Error('unix-dgram is stubbed out in actors-tests/media (WebSocket transport only)');
};

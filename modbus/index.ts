// Pure Modbus/TCP protocol code: bytes in, data out. No sockets, timers or environment.
export * from './errors.js';
export * from './constants.js';
export * from './functions.js';
export * from './mbap.js';
export * from './splitter.js';
export * from './request.js';
export * from './response.js';
export * from './role.js';

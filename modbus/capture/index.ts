// Capture files → Modbus frames: pure, like the rest of modbus/ (the CLI does the reading).
export * from './pcap.js';
export * from './packet.js';
export * from './tcp.js';

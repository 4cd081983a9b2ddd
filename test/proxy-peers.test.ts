// Real Modbus libraries on both sides: jsmodbus and modbus-serial clients → plcguard → the
// simulated PLC (jsmodbus server). What a plant's HMIs and PLCs would see.
import net from 'node:net';
import { once } from 'node:events';
import t, { type Test } from 'tap';
import Modbus from 'jsmodbus';
import ModbusSerial from 'modbus-serial';
import { startSimulatedPlc } from '../demo/plc.js';
import { DEMO_RULES, devicePolicy, startProxy } from './fixtures/proxy.js';

// modbus-serial is CommonJS; its constructor is on `.default`.
const ModbusRTU = ModbusSerial.default;

async function setup(t: Test) {
  const plc = await startSimulatedPlc({ tickMs: 0 });
  const proxy = await startProxy(devicePolicy(plc.port, DEMO_RULES));
  t.teardown(async () => {
    await proxy.stop();
    await plc.close();
  });
  return { plc, proxy };
}

interface ExceptionLike {
  err?: string;
  response?: { body?: { code?: number } };
}

void t.test('jsmodbus client through plcguard', async (t) => {
  const { plc, proxy } = await setup(t);
  const socket = new net.Socket();
  t.teardown(() => socket.destroy());
  // jsmodbus learns that the socket is online from its 'connect' event: create it first.
  const client = new Modbus.client.TCP(socket, 1, 2000);
  socket.connect({ host: '127.0.0.1', port: proxy.port });
  await once(socket, 'connect');
  const read = await client.readHoldingRegisters(0, 10);
  t.same(read.response.body.valuesAsArray, Array.from({ length: 10 }, (_, i) => plc.holding.readUInt16BE(2 * i)), 'values as the PLC holds them');
  await client.writeSingleRegister(10, 700);
  t.equal(plc.holding.readUInt16BE(20), 700, 'allowed setpoint written');
  await client.writeMultipleRegisters(12, [500, 60]);
  t.same([plc.holding.readUInt16BE(24), plc.holding.readUInt16BE(26)], [500, 60]);
  const rejected = (await client.writeSingleRegister(10, 5000).catch((e: unknown) => e)) as ExceptionLike;
  t.equal(rejected.err, 'ModbusException');
  t.equal(rejected.response?.body?.code, 3, 'value outside 0..1000 → exception 03');
  t.equal(plc.holding.readUInt16BE(20), 700, 'the PLC kept its value');
  const addr = (await client.writeSingleRegister(50, 1).catch((e: unknown) => e)) as ExceptionLike;
  t.equal(addr.response?.body?.code, 2, 'address outside the rule → exception 02');
  const coils = await client.readCoils(0, 8);
  t.equal(coils.response.body.valuesAsArray.length >= 8, true);
});

void t.test('modbus-serial client through plcguard, pipelined', async (t) => {
  const { plc, proxy } = await setup(t);
  const client = new ModbusRTU();
  await client.connectTCP('127.0.0.1', { port: proxy.port });
  client.setID(1);
  client.setTimeout(2000);
  t.teardown(() => new Promise<void>((resolve) => client.close(() => resolve())));
  // modbus-serial sends these without waiting for the answers in between.
  const reads = await Promise.all([0, 1, 2, 3, 4].map((i) => client.readInputRegisters(i, 1)));
  t.same(reads.map((r) => r.data[0]), [0, 1, 2, 3, 4].map((i) => plc.input.readUInt16BE(2 * i)));
  await client.writeRegister(13, 75);
  t.equal(plc.holding.readUInt16BE(26), 75);
  const denied = (await client.writeRegister(13, 1001).catch((e: unknown) => e)) as { modbusCode?: number };
  t.equal(denied.modbusCode, 3);
  const deniedCoil = (await client.writeCoil(9, true).catch((e: unknown) => e)) as { modbusCode?: number };
  t.equal(deniedCoil.modbusCode, 2);
  await client.writeCoil(5, true);
  t.equal((await client.readCoils(5, 1)).data[0], true);
});

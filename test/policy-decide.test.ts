// decide(), case by case: every kind of request at both edges of every range (inside, first,
// last, one before, one after), with the exact reason, exception and rule each earns.
import t, { type Test } from 'tap';
import { decodeRequest, encodeAdu, ModbusRequest } from '../modbus/index.js';
import { Decision, parsePolicy } from '../policy/index.js';
import type { CompiledDevice, CompiledPolicy } from '../policy/index.js';

const u16 = (n: number): number[] => [(n >> 8) & 0xff, n & 0xff];

// Request PDUs, laid out as MB-AP §6 gives them.
const pdu = {
  readCoils: (start: number, qty: number) => [1, ...u16(start), ...u16(qty)],
  readDiscrete: (start: number, qty: number) => [2, ...u16(start), ...u16(qty)],
  readHolding: (start: number, qty: number) => [3, ...u16(start), ...u16(qty)],
  readInput: (start: number, qty: number) => [4, ...u16(start), ...u16(qty)],
  writeCoil: (addr: number, on: number) => [5, ...u16(addr), ...u16(on ? 0xff00 : 0)],
  writeRegister: (addr: number, v: number) => [6, ...u16(addr), ...u16(v)],
  writeCoils: (start: number, bits: number[]) => {
    const bytes = new Array<number>((bits.length + 7) >> 3).fill(0);
    bits.forEach((b, i) => (bytes[i >> 3]! |= b << (i & 7)));
    return [15, ...u16(start), ...u16(bits.length), bytes.length, ...bytes];
  },
  writeRegisters: (start: number, values: number[]) => [16, ...u16(start), ...u16(values.length), 2 * values.length, ...values.flatMap(u16)],
  maskWrite: (addr: number) => [22, ...u16(addr), ...u16(0xff00), ...u16(0x0012)],
  readWrite: (rStart: number, rQty: number, wStart: number, values: number[]) => [
    23, ...u16(rStart), ...u16(rQty), ...u16(wStart), ...u16(values.length), 2 * values.length, ...values.flatMap(u16),
  ],
  fifo: (addr: number) => [24, ...u16(addr)],
  diagnostics: (sub: number) => [8, ...u16(sub), 0, 0],
  deviceId: () => [43, 14, 1, 0],
  mei: (type: number) => [43, type],
};

const reqBuf = new ModbusRequest();
const out = new Decision();

/** One decision as a line: `allow rule` or `deny reason 0xNN rule [violation]`. */
function decide(device: CompiledDevice, source: string, unit: number, bytes: number[]): string {
  const adu = encodeAdu(1, unit, Buffer.from(bytes));
  const req = decodeRequest(adu, 0, adu.length, reqBuf);
  const d = device.decide(device.forSource(source), req, out);
  if (d.allow) {
    if (d.exception !== 0 || d.violation !== 'none' || d.reason !== 'allowed') return 'inconsistent allow';
    return `allow ${d.rule}`;
  }
  const exc = `0x${d.exception.toString(16).padStart(2, '0')}`;
  return `deny ${d.reason} ${exc} ${d.rule ?? '-'}${d.violation === 'none' ? '' : ` ${d.violation}`}`;
}

function compile(yaml: string): CompiledPolicy {
  const r = parsePolicy(yaml, 'test.yaml');
  if (r.policy === undefined) throw new Error(r.errors.map((e) => e.format()).join('\n'));
  return r.policy;
}

const POLICY = compile(`
version: 1
devices:
  - name: plc
    listen: 127.0.0.1:5020
    upstream: 127.0.0.1:502
    rules:
      - name: reads
        sources: [10.0.0.0/24]
        units: [1, 5-6]
        read:
          coils: [10-19]
          discrete_inputs: [20-29]
          holding_registers: [100-199]
          input_registers: [0, 65530-65535]
      # Adjacent to reads' 100-199: a read across 199/200 is covered by the two rules together.
      - name: more-reads
        sources: [10.0.0.0/24]
        units: [1]
        read:
          holding_registers: [200-249]
      - name: setpoints
        sources: [10.0.0.5]
        units: [1]
        write:
          holding_registers:
            - { addresses: 10-19, values: 0-1000 }
            - 30-39
            - { addresses: 40, values: [5, 7-9] }
          coils: [0-7, { addresses: 8-15, values: 0 }]
      # Overlaps setpoints at 15-19: there a value is allowed if either bound allows it.
      - name: wide-setpoints
        sources: [10.0.0.5]
        units: [1]
        write:
          holding_registers:
            - { addresses: 15-24, values: 500-2000 }
      - name: engineering
        sources: [10.0.2.50]
        functions: [report_server_id, read_device_identification, 90, { code: diagnostics, subfunctions: [0, 10-12] }]
      - name: everything-else
        sources: [10.0.2.51]
        units: [2]
        functions: [diagnostics, encapsulated_interface_transport, read_exception_status, get_comm_event_counter,
                    get_comm_event_log, read_file_record, write_file_record, 65, 127]
      - name: rw
        sources: [10.0.3.7]
        units: [1]
        read: { holding_registers: [0-9] }
        write: { holding_registers: [{ addresses: 10-19, values: 0-100 }, 20-29] }
`);
const plc = POLICY.devices.get('plc')!;

type Case = [source: string, unit: number, pdu: number[], expected: string];

function run(t: Test, cases: Record<string, Case>): void {
  for (const [name, [source, unit, bytes, expected]] of Object.entries(cases)) t.equal(decide(plc, source, unit, bytes), expected, name);
}

const HMI = '10.0.0.1';
const OPERATOR = '10.0.0.5';

void t.test('FC1 read coils 10-19', (t) => {
  run(t, {
    inside: [HMI, 1, pdu.readCoils(12, 3), 'allow reads'],
    'first address': [HMI, 1, pdu.readCoils(10, 1), 'allow reads'],
    'last address': [HMI, 1, pdu.readCoils(19, 1), 'allow reads'],
    'whole range': [HMI, 1, pdu.readCoils(10, 10), 'allow reads'],
    'one before': [HMI, 1, pdu.readCoils(9, 1), 'deny address_not_allowed 0x02 reads'],
    'one after': [HMI, 1, pdu.readCoils(20, 1), 'deny address_not_allowed 0x02 reads'],
    'starting one before': [HMI, 1, pdu.readCoils(9, 2), 'deny address_not_allowed 0x02 reads'],
    'ending one after': [HMI, 1, pdu.readCoils(10, 11), 'deny address_not_allowed 0x02 reads'],
    'quantity 0': [HMI, 1, pdu.readCoils(10, 0), 'deny malformed 0x03 reads quantity'],
    'quantity 2001': [HMI, 1, pdu.readCoils(10, 2001), 'deny malformed 0x03 reads quantity'],
    'past 65535': [HMI, 1, pdu.readCoils(65535, 2), 'deny malformed 0x02 reads address_overflow'],
  });
  t.end();
});

void t.test('FC2 read discrete inputs 20-29', (t) => {
  run(t, {
    first: [HMI, 1, pdu.readDiscrete(20, 1), 'allow reads'],
    last: [HMI, 1, pdu.readDiscrete(29, 1), 'allow reads'],
    whole: [HMI, 1, pdu.readDiscrete(20, 10), 'allow reads'],
    'one before': [HMI, 1, pdu.readDiscrete(19, 1), 'deny address_not_allowed 0x02 reads'],
    'one after': [HMI, 1, pdu.readDiscrete(30, 1), 'deny address_not_allowed 0x02 reads'],
    'crossing the end': [HMI, 1, pdu.readDiscrete(25, 6), 'deny address_not_allowed 0x02 reads'],
  });
  t.end();
});

void t.test('FC3 read holding registers 100-199 (reads) + 200-249 (more-reads, unit 1 only)', (t) => {
  run(t, {
    first: [HMI, 1, pdu.readHolding(100, 1), 'allow reads'],
    last: [HMI, 1, pdu.readHolding(249, 1), 'allow more-reads'],
    'one before': [HMI, 1, pdu.readHolding(99, 1), 'deny address_not_allowed 0x02 reads'],
    'one after': [HMI, 1, pdu.readHolding(250, 1), 'deny address_not_allowed 0x02 reads'],
    'across the two rules, named by the first address': [HMI, 1, pdu.readHolding(190, 20), 'allow reads'],
    'second rule alone': [HMI, 1, pdu.readHolding(200, 10), 'allow more-reads'],
    'last of the first rule': [HMI, 1, pdu.readHolding(199, 1), 'allow reads'],
    '125 registers': [HMI, 1, pdu.readHolding(100, 125), 'allow reads'],
    '126 registers': [HMI, 1, pdu.readHolding(100, 126), 'deny malformed 0x03 reads quantity'],
    'crossing the end': [HMI, 1, pdu.readHolding(240, 11), 'deny address_not_allowed 0x02 reads'],
    'unit 5: only reads applies': [HMI, 5, pdu.readHolding(200, 1), 'deny address_not_allowed 0x02 reads'],
    'unit 5 inside reads': [HMI, 5, pdu.readHolding(199, 1), 'allow reads'],
    'truncated PDU': [HMI, 1, [3, 0, 100, 0], 'deny malformed 0x03 reads pdu_length'],
  });
  t.end();
});

void t.test('FC4 read input registers 0 and 65530-65535', (t) => {
  run(t, {
    'the single address': [HMI, 1, pdu.readInput(0, 1), 'allow reads'],
    'one after it': [HMI, 1, pdu.readInput(1, 1), 'deny address_not_allowed 0x02 reads'],
    'two from it': [HMI, 1, pdu.readInput(0, 2), 'deny address_not_allowed 0x02 reads'],
    'top range': [HMI, 1, pdu.readInput(65530, 6), 'allow reads'],
    'top address': [HMI, 1, pdu.readInput(65535, 1), 'allow reads'],
    'one before the top range': [HMI, 1, pdu.readInput(65529, 1), 'deny address_not_allowed 0x02 reads'],
    'past the address space': [HMI, 1, pdu.readInput(65535, 2), 'deny malformed 0x02 reads address_overflow'],
  });
  t.end();
});

void t.test('sources and units', (t) => {
  run(t, {
    'unit not in any rule of the source': [HMI, 2, pdu.readHolding(100, 1), 'deny unit_not_allowed 0x0a -'],
    'unit 0': [HMI, 0, pdu.readHolding(100, 1), 'deny unit_not_allowed 0x0a -'],
    'unit 4 (below 5-6)': [HMI, 4, pdu.readHolding(100, 1), 'deny unit_not_allowed 0x0a -'],
    'unit 5': [HMI, 5, pdu.readHolding(100, 1), 'allow reads'],
    'unit 6': [HMI, 6, pdu.readHolding(100, 1), 'allow reads'],
    'unit 7 (above 5-6)': [HMI, 7, pdu.readHolding(100, 1), 'deny unit_not_allowed 0x0a -'],
    'unit 255': [HMI, 255, pdu.readHolding(100, 1), 'deny unit_not_allowed 0x0a -'],
    'unit is checked before function': [HMI, 2, [90], 'deny unit_not_allowed 0x0a -'],
    'last address of the /24': ['10.0.0.255', 1, pdu.readHolding(100, 1), 'allow reads'],
    'first address after the /24': ['10.0.1.0', 1, pdu.readHolding(100, 1), 'deny source_not_allowed 0x0a -'],
    'IPv4-mapped IPv6 matches IPv4 rules': ['::ffff:10.0.0.1', 1, pdu.readHolding(100, 1), 'allow reads'],
    'IPv4-mapped outside': ['::ffff:10.0.1.1', 1, pdu.readHolding(100, 1), 'deny source_not_allowed 0x0a -'],
    'not an IP address': ['nonsense', 1, pdu.readHolding(100, 1), 'deny source_not_allowed 0x0a -'],
  });
  t.equal(plc.forSource('10.0.0.1').matches, true);
  t.equal(plc.forSource('10.0.1.1').matches, false);
  t.equal(plc.forSource('::ffff:10.0.2.50').matches, true);
  t.equal(plc.forSource('10.0.2.52').matches, false);
  t.end();
});

void t.test('function not granted at all: 01 before malformed', (t) => {
  run(t, {
    'write from a read-only source': [HMI, 1, pdu.writeRegister(100, 1), 'deny function_not_allowed 0x01 -'],
    'write coil from a read-only source': [HMI, 1, pdu.writeCoil(10, 1), 'deny function_not_allowed 0x01 -'],
    'malformed write from a read-only source': [HMI, 1, [16, 0, 100, 0, 0, 0], 'deny function_not_allowed 0x01 -'],
    'FC43 from a read-only source': [HMI, 1, pdu.deviceId(), 'deny function_not_allowed 0x01 -'],
    'a table without a read grant': ['10.0.3.7', 1, pdu.readCoils(0, 1), 'deny function_not_allowed 0x01 -'],
    'input registers from the rw source (no grant)': ['10.0.3.7', 1, pdu.readInput(0, 1), 'deny function_not_allowed 0x01 -'],
    'malformed read of a table without a grant': ['10.0.3.7', 1, pdu.readInput(0, 0), 'deny function_not_allowed 0x01 -'],
    'holding from engineering (no reads)': ['10.0.2.50', 1, pdu.readHolding(0, 1), 'deny function_not_allowed 0x01 -'],
    'FC 0': [HMI, 1, [0], 'deny function_not_allowed 0x01 -'],
    'FC 0x83 (an exception response as a request)': [HMI, 1, [0x83, 2], 'deny function_not_allowed 0x01 -'],
    'FC 255': ['10.0.2.51', 2, [255], 'deny function_not_allowed 0x01 -'],
  });
  t.end();
});

void t.test('FC6 write single register with value bounds', (t) => {
  run(t, {
    'first address, lowest value': [OPERATOR, 1, pdu.writeRegister(10, 0), 'allow setpoints'],
    'first address, highest value': [OPERATOR, 1, pdu.writeRegister(10, 1000), 'allow setpoints'],
    'value one above': [OPERATOR, 1, pdu.writeRegister(10, 1001), 'deny value_not_allowed 0x03 setpoints'],
    'address one before': [OPERATOR, 1, pdu.writeRegister(9, 0), 'deny address_not_allowed 0x02 setpoints'],
    'last address of setpoints': [OPERATOR, 1, pdu.writeRegister(19, 1000), 'allow setpoints'],
    'overlap: both allow, the first rule is named': [OPERATOR, 1, pdu.writeRegister(15, 700), 'allow setpoints'],
    'overlap: only the wide rule allows': [OPERATOR, 1, pdu.writeRegister(15, 1500), 'allow wide-setpoints'],
    'overlap: only setpoints allows': [OPERATOR, 1, pdu.writeRegister(15, 499), 'allow setpoints'],
    'overlap: neither allows': [OPERATOR, 1, pdu.writeRegister(15, 2001), 'deny value_not_allowed 0x03 setpoints'],
    'wide only, lowest': [OPERATOR, 1, pdu.writeRegister(20, 500), 'allow wide-setpoints'],
    'wide only, below': [OPERATOR, 1, pdu.writeRegister(20, 499), 'deny value_not_allowed 0x03 wide-setpoints'],
    'wide last address, highest': [OPERATOR, 1, pdu.writeRegister(24, 2000), 'allow wide-setpoints'],
    'wide last address, above': [OPERATOR, 1, pdu.writeRegister(24, 2001), 'deny value_not_allowed 0x03 wide-setpoints'],
    'one after the wide range': [OPERATOR, 1, pdu.writeRegister(25, 500), 'deny address_not_allowed 0x02 setpoints'],
    'any value: first': [OPERATOR, 1, pdu.writeRegister(30, 65535), 'allow setpoints'],
    'any value: last': [OPERATOR, 1, pdu.writeRegister(39, 0), 'allow setpoints'],
    'any value: one before': [OPERATOR, 1, pdu.writeRegister(29, 0), 'deny address_not_allowed 0x02 setpoints'],
    'value list: 5': [OPERATOR, 1, pdu.writeRegister(40, 5), 'allow setpoints'],
    'value list: 4': [OPERATOR, 1, pdu.writeRegister(40, 4), 'deny value_not_allowed 0x03 setpoints'],
    'value list: 6 (between the entries)': [OPERATOR, 1, pdu.writeRegister(40, 6), 'deny value_not_allowed 0x03 setpoints'],
    'value list: 7': [OPERATOR, 1, pdu.writeRegister(40, 7), 'allow setpoints'],
    'value list: 9': [OPERATOR, 1, pdu.writeRegister(40, 9), 'allow setpoints'],
    'value list: 10': [OPERATOR, 1, pdu.writeRegister(40, 10), 'deny value_not_allowed 0x03 setpoints'],
    'address after the list': [OPERATOR, 1, pdu.writeRegister(41, 5), 'deny address_not_allowed 0x02 setpoints'],
    'wrong unit': [OPERATOR, 2, pdu.writeRegister(10, 0), 'deny unit_not_allowed 0x0a -'],
    'truncated': [OPERATOR, 1, [6, 0, 10, 0], 'deny malformed 0x03 setpoints pdu_length'],
  });
  t.end();
});

void t.test('FC16 write multiple registers: every address covered, every value bounded', (t) => {
  run(t, {
    'two in bounds': [OPERATOR, 1, pdu.writeRegisters(10, [500, 600]), 'allow setpoints'],
    'whole bounded range': [OPERATOR, 1, pdu.writeRegisters(10, new Array<number>(10).fill(1000)), 'allow setpoints'],
    'one value out of bounds in the middle': [OPERATOR, 1, pdu.writeRegisters(10, [0, 0, 1001, 0]), 'deny value_not_allowed 0x03 setpoints'],
    'across the overlap into wide only': [OPERATOR, 1, pdu.writeRegisters(18, [0, 0, 600, 600]), 'allow setpoints'],
    'a value the wide rule refuses': [OPERATOR, 1, pdu.writeRegisters(18, [0, 0, 0, 0]), 'deny value_not_allowed 0x03 wide-setpoints'],
    'over the gap 25-29': [OPERATOR, 1, pdu.writeRegisters(24, [500, 0]), 'deny address_not_allowed 0x02 setpoints'],
    'starting one before': [OPERATOR, 1, pdu.writeRegisters(9, [0, 0]), 'deny address_not_allowed 0x02 setpoints'],
    'any-value range whole': [OPERATOR, 1, pdu.writeRegisters(30, new Array<number>(10).fill(65535)), 'allow setpoints'],
    'any-value range then the list': [OPERATOR, 1, pdu.writeRegisters(38, [1, 2, 8]), 'allow setpoints'],
    'any-value range then a bad list value': [OPERATOR, 1, pdu.writeRegisters(38, [1, 2, 6]), 'deny value_not_allowed 0x03 setpoints'],
    'ending one after': [OPERATOR, 1, pdu.writeRegisters(39, [1, 5, 5]), 'deny address_not_allowed 0x02 setpoints'],
    'address checked before value': [OPERATOR, 1, pdu.writeRegisters(10, [9999, ...new Array<number>(19).fill(0)]), 'deny address_not_allowed 0x02 setpoints'],
    'byte count mismatch': [OPERATOR, 1, [16, 0, 10, 0, 2, 2, 0, 1, 0, 2], 'deny malformed 0x03 setpoints byte_count'],
    'quantity 124': [OPERATOR, 1, pdu.writeRegisters(10, new Array<number>(124).fill(0)).slice(0, 6), 'deny malformed 0x03 setpoints quantity'],
  });
  t.end();
});

void t.test('FC5/FC15 coils: 0-7 any state, 8-15 may only be switched off', (t) => {
  run(t, {
    'first coil on': [OPERATOR, 1, pdu.writeCoil(0, 1), 'allow setpoints'],
    'coil 7 on': [OPERATOR, 1, pdu.writeCoil(7, 1), 'allow setpoints'],
    'coil 8 off': [OPERATOR, 1, pdu.writeCoil(8, 0), 'allow setpoints'],
    'coil 8 on': [OPERATOR, 1, pdu.writeCoil(8, 1), 'deny value_not_allowed 0x03 setpoints'],
    'coil 15 off': [OPERATOR, 1, pdu.writeCoil(15, 0), 'allow setpoints'],
    'coil 15 on': [OPERATOR, 1, pdu.writeCoil(15, 1), 'deny value_not_allowed 0x03 setpoints'],
    'coil 16': [OPERATOR, 1, pdu.writeCoil(16, 0), 'deny address_not_allowed 0x02 setpoints'],
    'FC5 bad value 0x1234': [OPERATOR, 1, [5, 0, 1, 0x12, 0x34], 'deny malformed 0x03 setpoints coil_value'],
    'FC15 6-9 on, on, off, off': [OPERATOR, 1, pdu.writeCoils(6, [1, 1, 0, 0]), 'allow setpoints'],
    'FC15 6-9 with 8 on': [OPERATOR, 1, pdu.writeCoils(6, [1, 1, 1, 0]), 'deny value_not_allowed 0x03 setpoints'],
    'FC15 all 16 off': [OPERATOR, 1, pdu.writeCoils(0, new Array<number>(16).fill(0)), 'allow setpoints'],
    'FC15 15 on, second byte': [OPERATOR, 1, pdu.writeCoils(0, [...new Array<number>(15).fill(0), 1]), 'deny value_not_allowed 0x03 setpoints'],
    'FC15 17 coils': [OPERATOR, 1, pdu.writeCoils(0, new Array<number>(17).fill(0)), 'deny address_not_allowed 0x02 setpoints'],
    'FC15 byte count wrong': [OPERATOR, 1, [15, 0, 0, 0, 9, 1, 0], 'deny malformed 0x03 setpoints byte_count'],
  });
  t.end();
});

void t.test('FC22 mask write: only where any value may be written', (t) => {
  run(t, {
    'any-value address': [OPERATOR, 1, pdu.maskWrite(30), 'allow setpoints'],
    'last any-value address': [OPERATOR, 1, pdu.maskWrite(39), 'allow setpoints'],
    'bounded address': [OPERATOR, 1, pdu.maskWrite(10), 'deny value_not_allowed 0x03 setpoints'],
    'bounded by the wide rule': [OPERATOR, 1, pdu.maskWrite(20), 'deny value_not_allowed 0x03 wide-setpoints'],
    'not writable': [OPERATOR, 1, pdu.maskWrite(29), 'deny address_not_allowed 0x02 setpoints'],
    'no write grant': [HMI, 1, pdu.maskWrite(30), 'deny function_not_allowed 0x01 -'],
    'truncated': [OPERATOR, 1, [22, 0, 30, 0xff, 0], 'deny malformed 0x03 setpoints pdu_length'],
  });
  t.end();
});

void t.test('FC23 read/write: the read part readable, the write part writable with values', (t) => {
  const RW = '10.0.3.7';
  run(t, {
    'both parts inside': [RW, 1, pdu.readWrite(0, 10, 10, [100]), 'allow rw'],
    'read part one after': [RW, 1, pdu.readWrite(0, 11, 10, [100]), 'deny address_not_allowed 0x02 rw'],
    'read part last only': [RW, 1, pdu.readWrite(9, 1, 29, [1]), 'allow rw'],
    'write value one above': [RW, 1, pdu.readWrite(0, 1, 10, [101]), 'deny value_not_allowed 0x03 rw'],
    'write part into the any-value range': [RW, 1, pdu.readWrite(0, 1, 18, [0, 0, 65535, 7]), 'allow rw'],
    'write part one before': [RW, 1, pdu.readWrite(0, 1, 9, [1]), 'deny address_not_allowed 0x02 rw'],
    'write part one after': [RW, 1, pdu.readWrite(0, 1, 29, [1, 1]), 'deny address_not_allowed 0x02 rw'],
    'the read part is checked first': [RW, 1, pdu.readWrite(50, 1, 10, [999]), 'deny address_not_allowed 0x02 rw'],
    'read grant but no write grant': [HMI, 1, pdu.readWrite(100, 1, 100, [1]), 'deny function_not_allowed 0x01 -'],
    'write grant and read grant from different rules': [OPERATOR, 1, pdu.readWrite(100, 2, 30, [1]), 'allow setpoints'],
    'write quantity 0': [RW, 1, [23, 0, 0, 0, 1, 0, 10, 0, 0, 0], 'deny malformed 0x03 rw quantity'],
  });
  t.end();
});

void t.test('FC24 read FIFO queue: a read of the pointer address', (t) => {
  run(t, {
    first: [HMI, 1, pdu.fifo(100), 'allow reads'],
    last: [HMI, 1, pdu.fifo(249), 'allow more-reads'],
    'one before': [HMI, 1, pdu.fifo(99), 'deny address_not_allowed 0x02 reads'],
    'one after': [HMI, 1, pdu.fifo(250), 'deny address_not_allowed 0x02 reads'],
    'no read grant': ['10.0.2.50', 1, pdu.fifo(100), 'deny function_not_allowed 0x01 -'],
    truncated: [HMI, 1, [24, 0], 'deny malformed 0x03 reads pdu_length'],
  });
  t.end();
});

void t.test('functions without an address model, narrowed and not', (t) => {
  const ENG = '10.0.2.50';
  const ALL = '10.0.2.51';
  run(t, {
    'FC17 listed by name': [ENG, 1, [17], 'allow engineering'],
    'FC17 in any unit (units omitted)': [ENG, 255, [17], 'allow engineering'],
    'FC17 with a stray byte': [ENG, 1, [17, 0], 'deny malformed 0x03 engineering pdu_length'],
    'FC7 not listed': [ENG, 1, [7], 'deny function_not_allowed 0x01 -'],
    'FC90 listed by number': [ENG, 1, [90, 0, 1], 'allow engineering'],
    'FC89 (one before)': [ENG, 1, [89], 'deny function_not_allowed 0x01 -'],
    'FC91 (one after)': [ENG, 1, [91], 'deny function_not_allowed 0x01 -'],
    'FC43/14 via read_device_identification': [ENG, 1, pdu.deviceId(), 'allow engineering'],
    'FC43/13 is not device identification': [ENG, 1, pdu.mei(13), 'deny function_not_allowed 0x01 engineering'],
    'FC43/15': [ENG, 1, pdu.mei(15), 'deny function_not_allowed 0x01 engineering'],
    'FC43 without a MEI type': [ENG, 1, [43], 'deny function_not_allowed 0x01 engineering'],
    'FC43/14 with a bad read device id code': [ENG, 1, [43, 14, 5, 0], 'deny malformed 0x03 engineering mei_data'],
    'FC8 sub 0': [ENG, 1, pdu.diagnostics(0), 'allow engineering'],
    'FC8 sub 1': [ENG, 1, pdu.diagnostics(1), 'deny function_not_allowed 0x01 engineering'],
    'FC8 sub 4 (force listen only)': [ENG, 1, pdu.diagnostics(4), 'deny function_not_allowed 0x01 engineering'],
    'FC8 sub 9 (one before 10-12)': [ENG, 1, pdu.diagnostics(9), 'deny function_not_allowed 0x01 engineering'],
    'FC8 sub 10': [ENG, 1, pdu.diagnostics(10), 'allow engineering'],
    'FC8 sub 12': [ENG, 1, pdu.diagnostics(12), 'allow engineering'],
    'FC8 sub 13 (one after)': [ENG, 1, pdu.diagnostics(13), 'deny function_not_allowed 0x01 engineering'],
    'FC8 sub 65535': [ENG, 1, pdu.diagnostics(65535), 'deny function_not_allowed 0x01 engineering'],
    'FC8 sub 0 with odd data': [ENG, 1, [8, 0, 0, 1, 2, 3], 'deny malformed 0x03 engineering pdu_length'],
    'FC8 too short for a sub-function, narrowed': [ENG, 1, [8, 0], 'deny function_not_allowed 0x01 engineering'],
    'FC8 too short, unnarrowed': [ALL, 2, [8, 0], 'deny malformed 0x03 everything-else pdu_length'],
    'FC8 sub 4, unnarrowed': [ALL, 2, pdu.diagnostics(4), 'allow everything-else'],
    'FC43 any MEI, unnarrowed': [ALL, 2, pdu.mei(13), 'allow everything-else'],
    'FC43 too short, unnarrowed': [ALL, 2, [43], 'deny malformed 0x03 everything-else pdu_length'],
    'FC7': [ALL, 2, [7], 'allow everything-else'],
    'FC11': [ALL, 2, [11], 'allow everything-else'],
    'FC12': [ALL, 2, [12], 'allow everything-else'],
    'FC20 read file record': [ALL, 2, [20, 7, 6, 0, 1, 0, 0, 0, 1], 'allow everything-else'],
    'FC20 bad reference type': [ALL, 2, [20, 7, 5, 0, 1, 0, 0, 0, 1], 'deny malformed 0x02 everything-else sub_request'],
    'FC21 write file record': [ALL, 2, [21, 9, 6, 0, 1, 0, 0, 0, 1, 0, 0], 'allow everything-else'],
    'FC65 (user-defined)': [ALL, 2, [65, 1, 2, 3], 'allow everything-else'],
    'FC66': [ALL, 2, [66], 'deny function_not_allowed 0x01 -'],
    'FC127': [ALL, 2, [127], 'allow everything-else'],
    'FC3 in that unit: no read grant': [ALL, 2, pdu.readHolding(0, 1), 'deny function_not_allowed 0x01 -'],
    'other unit': [ALL, 1, [7], 'deny unit_not_allowed 0x0a -'],
  });
  t.end();
});

void t.test('which rule is named when several allow', (t) => {
  const p = compile(`
version: 1
devices:
  - name: d
    listen: 127.0.0.1:1
    upstream: 127.0.0.1:2
    rules:
      - name: narrow
        functions: [{ code: diagnostics, subfunctions: [0] }, { code: 43, mei_types: [14] }]
      - name: broad
        functions: [diagnostics, encapsulated_interface_transport]
      - name: later-read
        read: { coils: [5-9] }
      - name: earlier-read-in-file-order-but-later-addresses
        read: { coils: [0-20] }
`);
  const d = p.devices.get('d')!;
  t.equal(decide(d, '1.2.3.4', 1, pdu.diagnostics(0)), 'allow narrow', 'first rule in file order that allows it');
  t.equal(decide(d, '1.2.3.4', 1, pdu.diagnostics(4)), 'allow broad');
  t.equal(decide(d, '1.2.3.4', 1, [8, 0]), 'deny malformed 0x03 broad pdu_length', 'no sub-function: only the unnarrowed grant applies');
  t.equal(decide(d, '1.2.3.4', 1, pdu.deviceId()), 'allow narrow');
  t.equal(decide(d, '1.2.3.4', 1, pdu.mei(13)), 'allow broad');
  t.equal(decide(d, '1.2.3.4', 1, pdu.readCoils(0, 21)), 'allow earlier-read-in-file-order-but-later-addresses', 'named by the first address');
  t.equal(decide(d, '1.2.3.4', 1, pdu.readCoils(5, 3)), 'allow later-read', 'later-read comes first in the file');
  t.equal(decide(d, '1.2.3.4', 1, pdu.readCoils(10, 3)), 'allow earlier-read-in-file-order-but-later-addresses');
  t.equal(decide(d, '1.2.3.4', 1, pdu.readCoils(21, 1)), 'deny address_not_allowed 0x02 later-read', 'denials name the first rule granting the table');
  t.end();
});

void t.test('a device without rules denies everything; no source matches it', (t) => {
  const p = compile('version: 1\ndevices:\n  - name: d\n    listen: 127.0.0.1:1\n    upstream: 127.0.0.1:2\n');
  const d = p.devices.get('d')!;
  t.equal(d.ruleCount, 0);
  t.equal(d.forSource('127.0.0.1').matches, false);
  t.equal(decide(d, '127.0.0.1', 1, pdu.readCoils(0, 1)), 'deny source_not_allowed 0x0a -');
  t.end();
});

void t.test('rules that can never match do not let a source in', (t) => {
  const p = compile(`
version: 1
devices:
  - name: d
    listen: 127.0.0.1:1
    upstream: 127.0.0.1:2
    rules:
      - { name: no-units, sources: [10.0.0.1], units: [], read: { coils: [0] } }
      - { name: no-grants, sources: [10.0.0.2], read: { coils: [] } }
      - { name: empty-narrowing, sources: [10.0.0.3], functions: [{ code: diagnostics, subfunctions: [] }] }
      - { name: no-sources, sources: [], read: { coils: [0] } }
      - { name: ipv6, sources: ["fd00::/64", "fe80::/10"], read: { coils: [0] } }
`);
  const d = p.devices.get('d')!;
  for (const a of ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4']) t.equal(d.forSource(a).matches, false, a);
  t.equal(d.forSource('fd00::1').matches, true);
  t.equal(d.forSource('fd00:0:0:1::1').matches, false);
  t.equal(d.forSource('fe80::1%eth0').matches, true, 'a zone index is ignored');
  t.equal(d.forSource('::ffff:10.0.0.1').matches, false);
  t.equal(decide(d, 'fd00::ab', 1, pdu.readCoils(0, 1)), 'allow ipv6');
  t.end();
});

void t.test('a view belongs to its device: a stale or foreign view fails closed', (t) => {
  const other = compile(POLICY.document === undefined ? '' : JSON.stringify(POLICY.document)).devices.get('plc')!;
  const adu = encodeAdu(1, 1, Buffer.from(pdu.readHolding(100, 1)));
  const req = decodeRequest(adu, 0, adu.length, new ModbusRequest());
  const d = new Decision();
  t.equal(plc.decide(other.forSource(HMI), req, d).reason, 'no_policy');
  t.equal(d.allow, false);
  t.equal(d.exception, 0x0a);
  t.equal(plc.decide({ matches: true }, req, d).reason, 'no_policy');
  t.equal(plc.decide(plc.forSource(HMI), req, d).reason, 'allowed');
  t.ok(Object.isFrozen(plc.forSource(HMI)));
  t.end();
});

void t.test('the decision object is refilled completely each time', (t) => {
  const d = new Decision();
  const view = plc.forSource(OPERATOR);
  const run1 = (bytes: number[]) => {
    const adu = encodeAdu(1, 1, Buffer.from(bytes));
    return plc.decide(view, decodeRequest(adu, 0, adu.length, reqBuf), d);
  };
  t.match(run1([16, 0, 10, 0, 2, 3, 0, 1, 0, 2]), { allow: false, reason: 'malformed', violation: 'byte_count', exception: 3, rule: 'setpoints' });
  t.match(run1(pdu.writeRegister(10, 1)), { allow: true, reason: 'allowed', violation: 'none', exception: 0, rule: 'setpoints' });
  t.match(run1(pdu.writeRegister(99, 1)), { allow: false, reason: 'address_not_allowed', violation: 'none', exception: 2 });
  t.match(run1([8, 0, 0, 0, 0]), { allow: false, reason: 'function_not_allowed', rule: null, exception: 1 });
  t.end();
});

void t.test('every rule set is built at load: thousands of sources each find their own prebuilt view', (t) => {
  const count = 2050;
  const rules = Array.from({ length: count }, (_, i) => `      - { sources: [10.${i >> 8}.${i & 0xff}.1], read: { coils: [${i}] } }`);
  const p = compile(`version: 1\ndevices:\n  - name: d\n    listen: 127.0.0.1:1\n    upstream: 127.0.0.1:2\n    rules:\n${rules.join('\n')}\n`);
  const d = p.devices.get('d')!;
  for (let i = 0; i < count; i++) {
    const source = `10.${i >> 8}.${i & 0xff}.1`;
    if (decide(d, source, 1, pdu.readCoils(i, 1)) !== `allow rule-${i}`) t.fail(source);
    if (decide(d, source, 1, pdu.readCoils(i + 1, 1)) !== `deny address_not_allowed 0x02 rule-${i}`) t.fail(`${source} +1`);
    if (d.forSource(source) !== d.forSource(`::ffff:${source}`)) t.fail(`${source}: one view`);
  }
  t.equal(decide(d, '10.0.0.1', 1, pdu.readCoils(0, 1)), 'allow rule-0');
  t.equal(d.forSource('10.0.0.0').matches, false);
  t.equal(d.forSource('10.0.0.2').matches, false);
  t.end();
});

void t.test('roles: a rule with roles applies only to clients whose certificate carries one', (t) => {
  const p = compile(`version: 1
devices:
  - name: d
    listen: 127.0.0.1:802
    upstream: 127.0.0.1:5021
    tls: { cert: server.crt, key: server.key, ca: [ca.crt, old-ca.crt], crl: ca.crl }
    rules:
      - name: operators
        roles: [Operator, Engineer]
        read: { holding_registers: [0-99] }
        write: { holding_registers: [{ addresses: 10-19, values: 0-100 }] }
      - name: viewers
        roles: [Viewer]
        read: { holding_registers: [0-99] }
      - name: engineers-on-site
        roles: [Engineer]
        sources: [10.0.0.0/8]
        functions: [read_device_identification]
      - name: anyone-authenticated
        read: { input_registers: [0] }
`);
  const d = p.devices.get('d')!;
  const as = (role: string | null, source: string, bytes: number[]): string => {
    const adu = encodeAdu(1, 1, Buffer.from(bytes));
    const dd = d.decide(d.forSource(source, role), decodeRequest(adu, 0, adu.length, reqBuf), out);
    return dd.allow ? `allow ${dd.rule}` : `deny ${dd.reason} 0x${dd.exception.toString(16).padStart(2, '0')} ${dd.rule ?? '-'}`;
  };
  t.equal(as('Operator', '192.0.2.1', pdu.writeRegister(10, 100)), 'allow operators');
  t.equal(as('Operator', '192.0.2.1', pdu.writeRegister(10, 101)), 'deny value_not_allowed 0x03 operators');
  t.equal(as('Operator', '192.0.2.1', pdu.readHolding(0, 100)), 'allow operators');
  t.equal(as('Viewer', '192.0.2.1', pdu.readHolding(0, 100)), 'allow viewers');
  t.equal(as('Viewer', '192.0.2.1', pdu.writeRegister(10, 1)), 'deny function_not_allowed 0x01 -', 'a Viewer writes nothing: exception 01');
  t.equal(as('Viewer', '192.0.2.1', pdu.readInput(0, 1)), 'allow anyone-authenticated');
  // Roles and sources together: both must match.
  t.equal(as('Engineer', '10.1.2.3', pdu.deviceId()), 'allow engineers-on-site');
  t.equal(as('Engineer', '192.0.2.1', pdu.deviceId()), 'deny function_not_allowed 0x01 -');
  t.equal(as('Engineer', '192.0.2.1', pdu.writeRegister(19, 0)), 'allow operators');
  // No role, or a role no rule names: only rules without roles.
  for (const role of [null, 'Guest', 'operator', 'Operator ']) {
    t.equal(as(role, '192.0.2.1', pdu.readInput(0, 1)), 'allow anyone-authenticated', `${role}`);
    t.equal(as(role, '192.0.2.1', pdu.readHolding(0, 1)), 'deny function_not_allowed 0x01 -', `${role}: exact match only`);
    t.equal(d.forSource('192.0.2.1', role), d.forSource('192.0.2.1', null), `${role}: the no-role view`);
  }
  t.equal(d.forSource('192.0.2.1', 'Viewer').matches, true);
  t.end();
});

void t.test('roles: a client whose identity matches no rule gets a view that matches nothing', (t) => {
  const p = compile(`version: 1
devices:
  - name: d
    listen: 127.0.0.1:802
    upstream: 127.0.0.1:5021
    tls: { cert: s.crt, key: s.key, ca: ca.crt }
    rules:
      - { roles: [Operator], sources: [10.0.0.0/8], read: { coils: [0] } }
`);
  const d = p.devices.get('d')!;
  t.equal(d.forSource('10.0.0.1', 'Operator').matches, true);
  t.equal(d.forSource('192.0.2.1', 'Operator').matches, false, 'the role, not the source');
  t.equal(d.forSource('10.0.0.1', 'Viewer').matches, false, 'the source, not the role');
  t.equal(d.forSource('10.0.0.1', null).matches, false, 'no role');
  t.equal(d.forSource('not-an-ip', 'Operator').matches, false, 'no address');
  t.end();
});

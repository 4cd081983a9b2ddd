// Every number plcguard takes from the Modbus specs, named once.
// Sources: Modbus Application Protocol Specification v1.1b3 (MB-AP) and
// Modbus Messaging on TCP/IP Implementation Guide v1.0b (MB-TCP).

/** MBAP header: transaction id (2), protocol id (2), length (2), unit id (1). MB-TCP §3.1.3 */
export const MBAP_HEADER_LENGTH = 7;
/** Bytes before the MBAP length field's payload starts (tid, pid, length). */
export const MBAP_PREFIX_LENGTH = 6;
/** The only protocol id that is Modbus. */
export const MODBUS_PROTOCOL_ID = 0;
/** MBAP length counts unit id + PDU: at least unit + function code. */
export const MIN_MBAP_LENGTH = 2;
/** 1 (unit) + 253 (max PDU, MB-AP §4.1). */
export const MAX_MBAP_LENGTH = 254;
export const MAX_PDU_LENGTH = 253;
/** 7 + 253. */
export const MAX_ADU_LENGTH = MBAP_HEADER_LENGTH + MAX_PDU_LENGTH;
/** Header plus the function code: what must be seen before a response can be matched. */
export const MBAP_AND_FC_LENGTH = MBAP_HEADER_LENGTH + 1;

/** Addresses are 16-bit, 0-based on the wire. */
export const ADDRESS_SPACE = 0x10000;
export const MAX_ADDRESS = 0xffff;

// Quantity limits (MB-AP §6.1–6.17).
export const MAX_READ_BITS = 2000; // FC1, FC2: 0x7D0
export const MAX_READ_REGISTERS = 125; // FC3, FC4: 0x7D
export const MAX_WRITE_COILS = 1968; // FC15: 0x7B0
export const MAX_WRITE_REGISTERS = 123; // FC16: 0x7B
export const MAX_RW_READ_REGISTERS = 125; // FC23 read part: 0x7D
export const MAX_RW_WRITE_REGISTERS = 121; // FC23 write part: 0x79
export const MAX_FIFO_COUNT = 31; // FC24 response
/** FC5: the only two legal coil values. */
export const COIL_ON = 0xff00;
export const COIL_OFF = 0x0000;

// FC20/21 file records (MB-AP §6.14, 6.15).
export const FILE_REFERENCE_TYPE = 6;
/** FC20 request data length: one 7-byte sub-request up to what fits a response. */
export const FILE_READ_MIN_BYTE_COUNT = 0x07;
export const FILE_READ_MAX_BYTE_COUNT = 0xf5;
/** FC21 request data length: one sub-request with at least one register, up to a full PDU. */
export const FILE_WRITE_MIN_BYTE_COUNT = 0x09;
export const FILE_WRITE_MAX_BYTE_COUNT = 0xfb;
export const FILE_SUB_REQUEST_LENGTH = 7; // FC20: ref type(1) file(2) record(2) length(2)
export const FILE_MAX_RECORD_NUMBER = 0x270f;
/** Files are numbered 1..0xFFFF; 0 is not a file. */
export const FILE_MIN_FILE_NUMBER = 1;

// FC43 MEI types (MB-AP §6.19–6.21).
export const MEI_CANOPEN = 13;
export const MEI_READ_DEVICE_IDENTIFICATION = 14;
export const MIN_READ_DEVICE_ID_CODE = 1;
export const MAX_READ_DEVICE_ID_CODE = 4;

/** FC8 sub-function 0 (Return Query Data) echoes any data; all others carry exactly 2 bytes. */
export const DIAG_RETURN_QUERY_DATA = 0;
export const DIAG_FORCE_LISTEN_ONLY = 4;
export const DIAG_DATA_LENGTH = 2;

/** The high bit of a function code marks an exception response. */
export const EXCEPTION_FLAG = 0x80;
/** Exception response PDU: FC|0x80 + exception code. */
export const EXCEPTION_PDU_LENGTH = 2;
export const EXCEPTION_ADU_LENGTH = MBAP_HEADER_LENGTH + EXCEPTION_PDU_LENGTH;

/** Exception codes (MB-AP §7). */
export const ExceptionCode = {
  ILLEGAL_FUNCTION: 0x01,
  ILLEGAL_DATA_ADDRESS: 0x02,
  ILLEGAL_DATA_VALUE: 0x03,
  SERVER_DEVICE_FAILURE: 0x04,
  SERVER_DEVICE_BUSY: 0x06,
  GATEWAY_PATH_UNAVAILABLE: 0x0a,
  GATEWAY_TARGET_FAILED: 0x0b,
} as const;
export type ExceptionCode = (typeof ExceptionCode)[keyof typeof ExceptionCode];

/** Exception codes' names as the spec writes them (MB-AP §7), for people. */
const EXCEPTION_NAMES: ReadonlyMap<number, string> = new Map([
  [0x01, 'illegal function'],
  [0x02, 'illegal data address'],
  [0x03, 'illegal data value'],
  [0x04, 'server device failure'],
  [0x05, 'acknowledge'],
  [0x06, 'server device busy'],
  [0x08, 'memory parity error'],
  [0x0a, 'gateway path unavailable'],
  [0x0b, 'gateway target device failed to respond'],
]);

export function exceptionName(code: number): string {
  return EXCEPTION_NAMES.get(code) ?? 'unknown exception code';
}

/** Public function codes (MB-AP §5.1). */
export const FunctionCode = {
  READ_COILS: 1,
  READ_DISCRETE_INPUTS: 2,
  READ_HOLDING_REGISTERS: 3,
  READ_INPUT_REGISTERS: 4,
  WRITE_SINGLE_COIL: 5,
  WRITE_SINGLE_REGISTER: 6,
  READ_EXCEPTION_STATUS: 7,
  DIAGNOSTICS: 8,
  GET_COMM_EVENT_COUNTER: 11,
  GET_COMM_EVENT_LOG: 12,
  WRITE_MULTIPLE_COILS: 15,
  WRITE_MULTIPLE_REGISTERS: 16,
  REPORT_SERVER_ID: 17,
  READ_FILE_RECORD: 20,
  WRITE_FILE_RECORD: 21,
  MASK_WRITE_REGISTER: 22,
  READ_WRITE_MULTIPLE_REGISTERS: 23,
  READ_FIFO_QUEUE: 24,
  ENCAPSULATED_INTERFACE_TRANSPORT: 43,
} as const;
export type FunctionCode = (typeof FunctionCode)[keyof typeof FunctionCode];

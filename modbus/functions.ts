import { FunctionCode } from './constants.js';

/** snake_case of the spec's names: the same strings in policy files, logs and metric labels. */
export const FUNCTION_NAMES: ReadonlyMap<number, string> = new Map([
  [FunctionCode.READ_COILS, 'read_coils'],
  [FunctionCode.READ_DISCRETE_INPUTS, 'read_discrete_inputs'],
  [FunctionCode.READ_HOLDING_REGISTERS, 'read_holding_registers'],
  [FunctionCode.READ_INPUT_REGISTERS, 'read_input_registers'],
  [FunctionCode.WRITE_SINGLE_COIL, 'write_single_coil'],
  [FunctionCode.WRITE_SINGLE_REGISTER, 'write_single_register'],
  [FunctionCode.READ_EXCEPTION_STATUS, 'read_exception_status'],
  [FunctionCode.DIAGNOSTICS, 'diagnostics'],
  [FunctionCode.GET_COMM_EVENT_COUNTER, 'get_comm_event_counter'],
  [FunctionCode.GET_COMM_EVENT_LOG, 'get_comm_event_log'],
  [FunctionCode.WRITE_MULTIPLE_COILS, 'write_multiple_coils'],
  [FunctionCode.WRITE_MULTIPLE_REGISTERS, 'write_multiple_registers'],
  [FunctionCode.REPORT_SERVER_ID, 'report_server_id'],
  [FunctionCode.READ_FILE_RECORD, 'read_file_record'],
  [FunctionCode.WRITE_FILE_RECORD, 'write_file_record'],
  [FunctionCode.MASK_WRITE_REGISTER, 'mask_write_register'],
  [FunctionCode.READ_WRITE_MULTIPLE_REGISTERS, 'read_write_multiple_registers'],
  [FunctionCode.READ_FIFO_QUEUE, 'read_fifo_queue'],
  [FunctionCode.ENCAPSULATED_INTERFACE_TRANSPORT, 'encapsulated_interface_transport'],
]);

/** Function codes the spec reserves for user-defined functions (MB-AP §5). */
export function isUserDefined(fc: number): boolean {
  return (fc >= 65 && fc <= 72) || (fc >= 100 && fc <= 110);
}

/** Function codes the spec reserves (MB-AP Annex A); 90 is Schneider's UMAS. */
const RESERVED = new Set([9, 10, 13, 14, 41, 42, 90, 91, 125, 126, 127]);
export function isReserved(fc: number): boolean {
  return RESERVED.has(fc);
}

/** Bounded metric label for a raw function code: public names, else `other`. */
const FUNCTION_LABELS: string[] = Array.from({ length: 256 }, (_, fc) => FUNCTION_NAMES.get(fc) ?? 'other');
export function functionLabel(fc: number): string {
  return FUNCTION_LABELS[fc & 0xff] as string;
}

// Parse an AsyncAPI document with the AsyncAPI parser and print what tests/specs/test_asyncapi.py
// checks, as one JSON object: every diagnostic (errors, warnings, information), and the channels,
// operations and messages the parser found. Exit status 0 when it parsed, 1 when it did not.
import { Parser, fromFile } from '@asyncapi/parser';

const SEVERITY = ['error', 'warning', 'information', 'hint'];

const parser = new Parser();
const { document, diagnostics } = await fromFile(parser, process.argv[2]).parse();
const result = {
  parsed: document !== undefined,
  diagnostics: diagnostics.map((d) => ({
    severity: SEVERITY[d.severity] ?? String(d.severity),
    code: d.code,
    message: d.message,
    path: d.path.join('.'),
  })),
};
if (document) {
  result.version = document.version();
  result.channels = document.channels().all().map((channel) => ({
    id: channel.id(),
    address: channel.address(),
    messages: channel.messages().all().map((message) => message.name()),
  }));
  result.operations = document.operations().all().map((operation) => ({
    id: operation.id(),
    action: operation.action(),
    channels: operation.channels().all().map((channel) => channel.id()),
  }));
}
process.stdout.write(JSON.stringify(result) + '\n');
process.exit(document ? 0 : 1);

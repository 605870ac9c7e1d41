// A useChat stand-in for promptkit's tests: the AI SDK's own DefaultChatTransport sends the
// request (so the real request body goes over the wire) and readUIMessageStream assembles the
// assistant message from the UI message stream, as useChat does.
//
// Usage:
//   node ui_chat_client.mjs URL MESSAGE [--chat-id ID] [--image URL --media-type TYPE]... [--body JSON]
//       [--history FILE]
//       POST URL with trigger 'submit-message': a chat whose one user message has MESSAGE as its
//       text part (and a file part per --image; --media-type, default image/png, applies to the
//       --image before it). --body adds its keys to the request body (the transport's body option).
//       --history FILE puts the UIMessages of a JSON file (an array) before the new user message,
//       as useChat sends a chat's earlier turns.
//   node ui_chat_client.mjs URL --reconnect CHAT_ID
//       GET URL/CHAT_ID/stream (transport.reconnectToStream); the server answers 204 when there
//       is no stream to resume, which prints {"message": null, ...}.
//   Either form takes --header 'NAME: VALUE' (repeatable): sent with every request (the
//   transport's headers option), e.g. the Cookie a browser would send.
//
// Prints one JSON object on stdout:
//   {"message": <the final UIMessage, or null>, "chunks": [<every chunk, as parsed>],
//    "errors": [<the errors readUIMessageStream reported (an "error" chunk's errorText), as strings>]}
// Exits 0 when the exchange ran (an "error" chunk included), 2 for bad arguments, 1 when the
// transport failed (non-2xx status, network error, a chunk that fails the schema).

import { readFileSync } from 'node:fs';
import { DefaultChatTransport, readUIMessageStream } from 'ai';

function usage(problem) {
  process.stderr.write(`${problem}\nusage: node ui_chat_client.mjs URL MESSAGE [--chat-id ID] ` +
    `[--image URL [--media-type TYPE]]... [--body JSON] [--history FILE]\n       node ui_chat_client.mjs URL --reconnect CHAT_ID\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const options = { chatId: 'chat-1', images: [], body: undefined, reconnect: undefined, history: [], headers: {}, positional: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${arg} needs a value`);
      return argv[++i];
    };
    if (arg === '--chat-id') options.chatId = value();
    else if (arg === '--reconnect') options.reconnect = value();
    else if (arg === '--image') options.images.push({ url: value(), mediaType: 'image/png' });
    else if (arg === '--media-type') {
      if (options.images.length === 0) usage('--media-type must follow an --image');
      options.images[options.images.length - 1].mediaType = value();
    } else if (arg === '--body') options.body = JSON.parse(value());
    else if (arg === '--history') options.history = JSON.parse(readFileSync(value(), 'utf8'));
    else if (arg === '--header') {
      const header = value();
      const colon = header.indexOf(':');
      if (colon <= 0) usage(`--header needs 'NAME: VALUE', got ${header}`);
      options.headers[header.slice(0, colon).trim()] = header.slice(colon + 1).trim();
    }
    else if (arg.startsWith('--')) usage(`unknown option ${arg}`);
    else options.positional.push(arg);
  }
  return options;
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const [api, text] = options.positional;
  if (api === undefined) usage('URL is missing');
  if (options.reconnect === undefined && text === undefined) usage('MESSAGE is missing');

  const transport = new DefaultChatTransport({ api, body: options.body, headers: options.headers });
  let stream;
  if (options.reconnect !== undefined) {
    stream = await transport.reconnectToStream({ chatId: options.reconnect });
  } else {
    const parts = [{ type: 'text', text }];
    for (const image of options.images) parts.push({ type: 'file', mediaType: image.mediaType, url: image.url });
    stream = await transport.sendMessages({
      chatId: options.chatId,
      messages: [...options.history, { id: `user-${options.history.length + 1}`, role: 'user', parts }],
      trigger: 'submit-message',
      messageId: undefined,
      abortSignal: undefined,
    });
  }
  if (stream === null) {
    process.stdout.write(JSON.stringify({ message: null, chunks: [], errors: [] }) + '\n');
    return;
  }

  const [forReader, forLog] = stream.tee();
  const chunks = [];
  const logged = (async () => {
    for await (const chunk of forLog) chunks.push(chunk);
  })();
  const errors = [];
  let message = null;
  for await (const snapshot of readUIMessageStream({ stream: forReader, onError: error => errors.push(String(error?.message ?? error)) })) {
    message = snapshot;
  }
  await logged;
  process.stdout.write(JSON.stringify({ message, chunks, errors }) + '\n');
}

main().catch(error => {
  process.stderr.write(`ui_chat_client: ${error?.stack ?? error}\n`);
  process.exit(1);
});

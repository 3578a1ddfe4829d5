// serve.test.mjs — drives a running `kiln serve` with the official openai client (and raw fetch for the
// malformed requests a client library would refuse to send). Prints one "PASS name" / "FAIL name: why"
// line per check. Environment (set by tests/cli/serve.sh):
//   STORIES_URL, STORIES_PID  server on stories260K, started with --api-key sekrit --max-body-kb 64
//                             --served-model-name stories260K,stories --allowed-origins http://app.example
//   QWEN_URL, QWEN_PID        server on tiny-qwen3, started with --max-batch 2 --max-queue 2 --api-key sekrit
//                             --health-public --read-timeout 2 --max-connections-per-ip 16 --drain 1
//   EXPECTED                  JSON file: [{prompt:[ids], ids:[greedy ids from kiln generate]}]
//   RUN_CHAT, RUN_TEXT        `kiln run --greedy --json` output: "Hello there!" on tiny-qwen3 (24 tokens),
//                             "Once upon a time" on stories260K (40 tokens)
//   MAX_TOKENS                tokens asked in the greedy comparisons
import OpenAI from 'openai';
import { readFileSync } from 'node:fs';
import net from 'node:net';

const results = [];
const pass = (n) => { console.log(`PASS ${n}`); results.push(true); };
const fail = (n, why) => { console.log(`FAIL ${n}: ${why}`); results.push(false); };
const check = (n, ok, why) => (ok ? pass(n) : fail(n, why));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function step(name, fn) { // every check bounded in time; an exception is a failure, not a crash
  try { await Promise.race([fn(), sleep(150000).then(() => { throw new Error('timed out after 150s'); })]); }
  catch (e) { fail(name, e?.message ?? String(e)); }
}

const S = process.env.STORIES_URL, Q = process.env.QWEN_URL;
const KEY = 'sekrit';
const stories = new OpenAI({ baseURL: `${S}/v1`, apiKey: KEY, maxRetries: 0, timeout: 120000 });
const qwen = new OpenAI({ baseURL: `${Q}/v1`, apiKey: KEY, maxRetries: 0, timeout: 120000 });
const expected = JSON.parse(readFileSync(process.env.EXPECTED, 'utf8'));
const N = Number(process.env.MAX_TOKENS);
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

async function metrics(url) {
  const text = await (await fetch(`${url}/metrics`, { headers: { Authorization: `Bearer ${KEY}` } })).text();
  const get = (name) => { const m = text.match(new RegExp(`^${name} (\\S+)$`, 'm')); return m ? Number(m[1]) : NaN; };
  return { text, get };
}

// Greedy completion of token ids through the client; return_token_ids is vLLM's extension.
const greedy = (prompt) => stories.completions.create({
  model: 'stories260K', prompt, max_tokens: N, temperature: 0, ignore_eos: true, return_token_ids: true,
});

await step('models_list', async () => {
  const list = await stories.models.list();
  check('models_list', list.data.length === 2 && list.data[0].id === 'stories260K' && list.data[1].id === 'stories', JSON.stringify(list.data));
});

await step('greedy_alone_equals_kiln_generate', async () => {
  let bad = [];
  for (const e of expected) {
    const r = await greedy(e.prompt);
    const got = r.choices[0].token_ids;
    if (!same(got, e.ids)) bad.push(`prompt ${e.prompt}: got ${got} want ${e.ids}`);
    if (r.usage.completion_tokens !== N || r.usage.prompt_tokens !== e.prompt.length) bad.push(`usage ${JSON.stringify(r.usage)}`);
    if (r.object !== 'text_completion' || r.choices[0].finish_reason !== 'length') bad.push(`shape ${JSON.stringify(r)}`);
  }
  check('greedy_alone_equals_kiln_generate', bad.length === 0, bad.join('; '));
});

await step('greedy_16_parallel_equal_alone', async () => {
  const jobs = Array.from({ length: 16 }, (_, i) => expected[i % expected.length]);
  const rs = await Promise.all(jobs.map((e) => greedy(e.prompt)));
  const bad = rs.map((r, i) => same(r.choices[0].token_ids, jobs[i].ids) ? null : `#${i}`).filter(Boolean);
  check('greedy_16_parallel_equal_alone', bad.length === 0, `differ: ${bad.join(',')}`);
});

await step('prefix_cache_reuses_blocks', async () => {
  const before = (await metrics(S)).get('kiln_prefix_cache_hit_tokens_total');
  const e = expected.find((x) => x.prompt.length > 16) ?? expected[0];
  const r = await greedy(e.prompt); // seen before: its full blocks are cached
  const after = (await metrics(S)).get('kiln_prefix_cache_hit_tokens_total');
  check('prefix_cache_reuses_blocks', after > before && same(r.choices[0].token_ids, e.ids) &&
        r.usage.prompt_tokens_details?.cached_tokens > 0, `hit tokens ${before} -> ${after}, ${JSON.stringify(r.usage)}`);
});

await step('streaming_completion', async () => {
  const e = expected[0];
  const stream = await stories.completions.create({ model: 'stories260K', prompt: e.prompt, max_tokens: N,
    temperature: 0, ignore_eos: true, stream: true, stream_options: { include_usage: true } });
  let text = '', finish = null, usage = null, n = 0;
  for await (const c of stream) {
    n++;
    if (c.choices.length) { text += c.choices[0].text; finish = c.choices[0].finish_reason ?? finish; }
    if (c.usage) usage = c.usage;
  }
  const whole = await stories.completions.create({ model: 'stories260K', prompt: e.prompt, max_tokens: N, temperature: 0, ignore_eos: true });
  check('streaming_completion', n >= 2 && text === whole.choices[0].text && finish === 'length' && usage?.completion_tokens === N,
        `chunks ${n}, finish ${finish}, usage ${JSON.stringify(usage)}, text ${JSON.stringify(text)} vs ${JSON.stringify(whole.choices[0].text)}`);
});

await step('sse_wire_format', async () => {
  const res = await fetch(`${S}/v1/completions`, { method: 'POST', headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt: 'Once upon a time', max_tokens: 5, stream: true, stream_options: { include_usage: true } }) });
  const body = await res.text();
  const events = body.split('\n\n').filter((x) => x);
  const last = JSON.parse(events.at(-2).slice(6));
  check('sse_wire_format', res.headers.get('content-type').startsWith('text/event-stream') &&
        events.every((x) => x.startsWith('data: ')) && body.endsWith('data: [DONE]\n\n') &&
        last.choices.length === 0 && last.usage.completion_tokens >= 1, body.slice(-300));
});

await step('text_prompt_and_stop', async () => {
  const a = await stories.completions.create({ model: 'stories', prompt: 'Once upon a time', max_tokens: 40, temperature: 0 });
  const full = a.choices[0].text;
  const stop = full.slice(8, 11);
  const b = await stories.completions.create({ model: 'stories', prompt: 'Once upon a time', max_tokens: 40, temperature: 0, stop: [stop] });
  check('text_prompt_and_stop', full.length > 10 && b.choices[0].text === full.slice(0, full.indexOf(stop)) &&
        b.choices[0].finish_reason === 'stop', `full ${JSON.stringify(full)} stop ${JSON.stringify(stop)} got ${JSON.stringify(b.choices[0].text)}`);
});

await step('seeded_sampling_reproducible', async () => {
  const ask = () => stories.completions.create({ model: 'stories', prompt: 'Once upon a time', max_tokens: 20, temperature: 1, top_p: 0.9, top_k: 40, seed: 7 });
  const [a, b] = [await ask(), await ask()];
  check('seeded_sampling_reproducible', a.choices[0].text === b.choices[0].text && a.choices[0].text.length > 0, `${a.choices[0].text} | ${b.choices[0].text}`);
});

await step('presence_frequency_penalties', async () => {
  const ask = (extra) => stories.completions.create({ model: 'stories', prompt: 'Once upon a time', max_tokens: 60, temperature: 0, ignore_eos: true, ...extra });
  const [plain, again, pen] = [await ask({}), await ask({}), await ask({ frequency_penalty: 2, presence_penalty: 0.5 })];
  let range = false;
  try { await ask({ presence_penalty: 3 }); } catch (e) { range = e instanceof OpenAI.BadRequestError; }
  check('presence_frequency_penalties', plain.choices[0].text === again.choices[0].text && pen.choices[0].text !== plain.choices[0].text && range,
        `plain ${JSON.stringify(plain.choices[0].text)} penalised ${JSON.stringify(pen.choices[0].text)} range400 ${range}`);
});

await step('logprobs', async () => {
  const r = await stories.completions.create({ model: 'stories', prompt: 'Once upon a time', max_tokens: 4, temperature: 0, logprobs: 3 });
  const lp = r.choices[0].logprobs;
  const ok = lp.tokens.length === 4 && lp.token_logprobs.every((x) => x <= 0) &&
    lp.top_logprobs.every((t, i) => Object.keys(t).length >= 1 && Math.abs(Math.max(...Object.values(t)) - lp.token_logprobs[i]) < 1e-4);
  check('logprobs', ok, JSON.stringify(lp));
});

await step('64_concurrent_clients', async () => {
  const jobs = Array.from({ length: 64 }, (_, i) => expected[i % expected.length]);
  const rs = await Promise.allSettled(jobs.map((e) => greedy(e.prompt)));
  const bad = rs.map((r, i) => r.status === 'fulfilled' && same(r.value.choices[0].token_ids, jobs[i].ids) ? null : `#${i}:${r.reason?.status ?? 'wrong'}`).filter(Boolean);
  check('64_concurrent_clients', bad.length === 0, bad.slice(0, 5).join(','));
});

await step('greedy_equals_kiln_run', async () => {
  // Same generation code as `kiln run --greedy` (kiln_gen_seq): same ids and text, alone or batched.
  const chat = JSON.parse(readFileSync(process.env.RUN_CHAT, 'utf8')), text = JSON.parse(readFileSync(process.env.RUN_TEXT, 'utf8'));
  const askChat = () => qwen.chat.completions.create({ model: 'tiny-qwen3', messages: [{ role: 'user', content: 'Hello there!' }],
    max_tokens: 24, temperature: 0, return_token_ids: true });
  const askText = () => stories.completions.create({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 40, temperature: 0, return_token_ids: true });
  const rs = await Promise.all([askChat(), askText(), askChat(), askText(), askText()]);
  const bad = [];
  for (const r of rs) {
    const c = r.choices[0], want = r.object === 'chat.completion' ? chat : text;
    const got = r.object === 'chat.completion' ? c.message.content : c.text;
    if (!same(c.token_ids, want.ids)) bad.push(`${r.object} ids ${c.token_ids} want ${want.ids}`);
    if (got !== want.text) bad.push(`${r.object} text ${JSON.stringify(got)} want ${JSON.stringify(want.text)}`);
    if (r.object === 'chat.completion' && (c.message.reasoning_content ?? '') !== want.thinking) bad.push(`thinking ${c.message.reasoning_content}`);
    if (c.finish_reason !== want.finish_reason.replace('eos', 'stop')) bad.push(`finish ${c.finish_reason} want ${want.finish_reason}`);
  }
  check('greedy_equals_kiln_run', bad.length === 0, bad.join('; '));
});

// ---- errors ----
async function status(url, path, { method = 'POST', body, key = KEY, raw } = {}) {
  const headers = { 'Content-Type': 'application/json' };
  if (key) headers.Authorization = `Bearer ${key}`;
  const res = await fetch(`${url}${path}`, { method, headers, body: raw ?? (body === undefined ? undefined : JSON.stringify(body)) });
  const text = await res.text();
  let err = null;
  try { err = JSON.parse(text).error; } catch { /* not JSON */ }
  return { code: res.status, err, headers: res.headers };
}

await step('malformed_inputs', async () => {
  const msgs = [{ role: 'user', content: 'hi' }];
  const cases = [
    ['bad_json', '/v1/completions', { raw: '{"prompt": "x",' }, 400],
    ['not_object', '/v1/completions', { raw: '[1,2]' }, 400],
    ['no_prompt', '/v1/completions', { body: { max_tokens: 3 } }, 400],
    ['prompt_type', '/v1/completions', { body: { prompt: { a: 1 } } }, 400],
    ['prompt_empty', '/v1/completions', { body: { prompt: [] } }, 400],
    ['prompt_id_range', '/v1/completions', { body: { prompt: [1, 99999] } }, 400],
    ['prompt_list', '/v1/completions', { body: { prompt: ['a', 'b'] } }, 400],
    ['prompt_too_long', '/v1/completions', { body: { prompt: Array(600).fill(5) } }, 400],
    ['max_tokens_over_ctx', '/v1/completions', { body: { prompt: [1, 5], max_tokens: 100000 } }, 400],
    ['max_tokens_zero', '/v1/completions', { body: { prompt: 'a', max_tokens: 0 } }, 400],
    ['max_tokens_type', '/v1/completions', { body: { prompt: 'a', max_tokens: 'ten' } }, 400],
    ['temperature_range', '/v1/completions', { body: { prompt: 'a', temperature: 3 } }, 400],
    ['temperature_type', '/v1/completions', { body: { prompt: 'a', temperature: 'hot' } }, 400],
    ['top_p_range', '/v1/completions', { body: { prompt: 'a', top_p: 0 } }, 400],
    ['top_k_type', '/v1/completions', { body: { prompt: 'a', top_k: 1.5 } }, 400],
    ['min_p_range', '/v1/completions', { body: { prompt: 'a', min_p: -1 } }, 400],
    ['seed_type', '/v1/completions', { body: { prompt: 'a', seed: 'x' } }, 400],
    ['stop_type', '/v1/completions', { body: { prompt: 'a', stop: 5 } }, 400],
    ['stream_type', '/v1/completions', { body: { prompt: 'a', stream: 'yes' } }, 400],
    ['n_too_many', '/v1/completions', { body: { prompt: 'a', n: 17 } }, 400],
    ['best_of_below_n', '/v1/completions', { body: { prompt: 'a', n: 3, best_of: 2 } }, 400],
    ['messages_missing', '/v1/chat/completions', { body: {} }, 400],
    ['messages_type', '/v1/chat/completions', { body: { messages: 'hi' } }, 400],
    ['role_bad', '/v1/chat/completions', { body: { messages: [{ role: 'wizard', content: 'x' }] } }, 400],
    ['top_logprobs_alone', '/v1/chat/completions', { body: { messages: msgs, top_logprobs: 2 } }, 400],
    ['no_key', '/v1/completions', { body: { prompt: 'a' }, key: null }, 401],
    ['wrong_key', '/v1/models', { method: 'GET', key: 'nope' }, 401],
    ['unknown_path', '/v1/nothing', { body: {} }, 404],
    ['wrong_method', '/v1/completions', { method: 'GET' }, 405],
    ['too_big', '/v1/completions', { raw: JSON.stringify({ prompt: 'a'.repeat(100 * 1024) }) }, 413],
  ];
  const bad = [];
  for (const [name, path, opt, want] of cases) {
    const r = await status(S, path, opt);
    if (r.code !== want || !r.err || typeof r.err.message !== 'string') bad.push(`${name}: ${r.code} ${JSON.stringify(r.err)}`);
  }
  // The client library surfaces them as typed errors too.
  try { await stories.completions.create({ model: 'stories', prompt: 'a', n: 0 }); bad.push('client n=0 accepted'); }
  catch (e) { if (!(e instanceof OpenAI.BadRequestError) || !/'n'/.test(e.message)) bad.push(`client: ${e}`); }
  const h = await (await fetch(`${S}/health`, { headers: { Authorization: `Bearer ${KEY}` } })).json();
  if (h.status !== 'ok') bad.push('health after errors');
  check('malformed_inputs', bad.length === 0, bad.join('; '));
});

// ---- chat on tiny-qwen3 (chat template with thinking and tools) ----
await step('chat_non_streaming', async () => {
  const r = await qwen.chat.completions.create({ model: 'tiny-qwen3', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello!' }],
    max_tokens: 12, temperature: 0, logprobs: true, top_logprobs: 2 });
  const c = r.choices[0];
  check('chat_non_streaming', r.object === 'chat.completion' && c.message.role === 'assistant' && typeof c.message.content === 'string' &&
        'reasoning_content' in c.message && ['stop', 'length'].includes(c.finish_reason) && r.usage.prompt_tokens > 5 &&
        c.logprobs.content.length === r.usage.completion_tokens - (c.finish_reason === 'stop' ? 1 : 0) &&
        c.logprobs.content.every((t) => t.top_logprobs.length === 2), JSON.stringify(r));
});

await step('chat_streaming_matches_whole', async () => {
  const ask = { model: 'tiny-qwen3', messages: [{ role: 'user', content: 'Tell me a story.' }], max_tokens: 16, temperature: 0,
    tools: [{ type: 'function', function: { name: 'get_time', description: 'now', parameters: { type: 'object', properties: {} } } }],
    chat_template_kwargs: { enable_thinking: false } };
  const whole = await qwen.chat.completions.create(ask);
  const stream = await qwen.chat.completions.create({ ...ask, stream: true, stream_options: { include_usage: true } });
  let text = '', role = null, usage = null, finish = null;
  for await (const c of stream) {
    if (c.choices.length) { role ??= c.choices[0].delta.role; text += c.choices[0].delta.content ?? ''; finish = c.choices[0].finish_reason ?? finish; }
    if (c.usage) usage = c.usage;
  }
  check('chat_streaming_matches_whole', role === 'assistant' && text === whole.choices[0].message.content && finish === whole.choices[0].finish_reason &&
        usage?.total_tokens === whole.usage.total_tokens, `${JSON.stringify(text)} vs ${JSON.stringify(whole.choices[0].message.content)} usage ${JSON.stringify(usage)}`);
});

await step('queue_full_429', async () => {
  // --max-batch 2 --max-queue 2: of 8 simultaneous long requests some must be turned away with Retry-After.
  const body = { messages: [{ role: 'user', content: 'go' }], max_tokens: 300, ignore_eos: true };
  const rs = await Promise.all(Array.from({ length: 8 }, () => status(Q, '/v1/chat/completions', { body })));
  const n429 = rs.filter((r) => r.code === 429 && Number(r.headers.get('retry-after')) >= 1 && r.err.type === 'rate_limit_exceeded').length;
  const n200 = rs.filter((r) => r.code === 200).length;
  check('queue_full_429', n429 >= 1 && n200 >= 2 && n429 + n200 === 8, rs.map((r) => r.code).join(','));
});

await step('disconnect_frees_kv', async () => {
  const idle = async () => { for (let i = 0; i < 600; i++) { const m = await metrics(Q); if (m.get('kiln_running_sequences') === 0 && m.get('kiln_queue_depth') === 0) return m; await sleep(50); } throw new Error('server never idle'); };
  const base = (await idle()).get('kiln_kv_blocks_used');
  const ac = new AbortController();
  const stream = await qwen.chat.completions.create({ model: 'tiny-qwen3', messages: [{ role: 'user', content: 'a long one' }], max_tokens: 3000,
    ignore_eos: true, stream: true, logprobs: true }, { signal: ac.signal }); // logprobs: a chunk per token
  let chunks = 0, during = 0;
  try {
    for await (const _ of stream) { if (++chunks === 3) { during = (await metrics(Q)).get('kiln_kv_blocks_used'); ac.abort(); } }
  } catch { /* aborted */ }
  const after = await idle();
  check('disconnect_frees_kv', during > base && after.get('kiln_kv_blocks_used') === base &&
        /kiln_requests_total\{endpoint="\/v1\/chat\/completions",status="499"\} [1-9]/.test(after.text),
        `blocks base ${base} during ${during} after ${after.get('kiln_kv_blocks_used')}`);
});

await step('metrics_exposition', async () => {
  const m = await metrics(S);
  const names = ['kiln_prompt_tokens_total', 'kiln_generation_tokens_total', 'kiln_queue_depth', 'kiln_running_sequences',
    'kiln_kv_blocks_used', 'kiln_time_to_first_token_seconds_count', 'kiln_time_per_output_token_seconds_count'];
  const missing = names.filter((n) => !(m.get(n) >= 0));
  check('metrics_exposition', missing.length === 0 && m.get('kiln_generation_tokens_total') > 64 * N &&
        m.get('kiln_time_to_first_token_seconds_count') > 64 && /kiln_requests_total\{endpoint="\/v1\/completions",status="400"\}/.test(m.text),
        `missing ${missing}`);
});

// ---- detokenization against context (issue 17 item 4) ----
await step('once_upon_continues_with_space', async () => {
  const ask = (extra) => stories.completions.create({ model: 'stories260K', prompt: 'Once upon', max_tokens: 6, temperature: 0,
    ignore_eos: true, return_token_ids: true, ...extra });
  const plain = await ask({ logprobs: 1 }), echo = await ask({ echo: true });
  const text = plain.choices[0].text, lp = plain.choices[0].logprobs;
  let streamed = '';
  for await (const c of await ask({ stream: true })) streamed += c.choices[0]?.text ?? '';
  const ids = [...plain.choices[0].prompt_token_ids.slice(1), ...plain.choices[0].token_ids]; // without <s>
  const de = await status(S, '/detokenize', { body: { tokens: ids } });
  const whole = (await (await fetch(`${S}/detokenize`, { method: 'POST', headers: { Authorization: `Bearer ${KEY}` }, body: JSON.stringify({ tokens: ids }) })).json()).prompt;
  let off = 0;
  const offsets_ok = lp.tokens.every((t, i) => { const ok = lp.text_offset[i] === off; off += t.length; return ok; });
  check('once_upon_continues_with_space', text.startsWith(' a time') && echo.choices[0].text === `Once upon${text}` &&
        streamed === text && lp.tokens.join('') === text && offsets_ok && de.code === 200 && whole === `Once upon${text}`,
        `text ${JSON.stringify(text)} echo ${JSON.stringify(echo.choices[0].text)} streamed ${JSON.stringify(streamed)} tokens ${JSON.stringify(lp.tokens)} offsets ${lp.text_offset} decode ${JSON.stringify(whole)}`);
});

// ---- the parameter contract (issue 17 items 2 and 6) ----
await step('completions_default_max_tokens_16', async () => {
  const r = await stories.completions.create({ model: 'stories260K', prompt: 'Once upon a time', ignore_eos: true });
  check('completions_default_max_tokens_16', r.usage.completion_tokens === 16 && r.choices[0].finish_reason === 'length', JSON.stringify(r.usage));
});

await step('unimplemented_parameters_400', async () => {
  const msgs = [{ role: 'user', content: 'hi' }];
  const cases = [
    [qwen, 'chat', { response_format: { type: 'xml' } }, 'response_format'],
    [qwen, 'chat', { tool_choice: { type: 'function', function: { name: 'g' } }, tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }] }, 'tool_choice'],
    [stories, 'text', { logit_bias: { abc: 10 } }, 'logit_bias'],
    [stories, 'text', { best_of: 3, n: 2, stream: true }, 'best_of'],
    [stories, 'text', { guided_regex: 'a+', guided_choice: ['b'] }, 'guided_choice'],
    [stories, 'text', { no_such_parameter: 1 }, 'no_such_parameter'],
  ];
  const bad = [];
  for (const [client, kind, extra, param] of cases) {
    try {
      if (kind === 'chat') await client.chat.completions.create({ model: 'tiny-qwen3', messages: msgs, max_tokens: 2, ...extra });
      else await client.completions.create({ model: 'stories260K', prompt: 'a', max_tokens: 2, ...extra });
      bad.push(`${param} accepted`);
    } catch (e) { if (!(e instanceof OpenAI.BadRequestError) || e.param !== param || !e.message.includes(param)) bad.push(`${param}: ${e}`); }
  }
  const ok = await stories.completions.create({ model: 'stories260K', prompt: 'a', max_tokens: 2, user: 'u1', logit_bias: {}, best_of: 1 });
  if (ok.choices.length !== 1) bad.push('ignored-by-design user refused');
  check('unimplemented_parameters_400', bad.length === 0, bad.join('; '));
});

// ---- structured outputs and forced tool calls (issue 17 item 1): a random-weight model must still
// produce output that parses and validates. Schemas bound every string / array / number. ----
const PERSON = {
  type: 'object', additionalProperties: false, required: ['name', 'age', 'color', 'tags'],
  properties: {
    name: { type: 'string', maxLength: 12 }, age: { type: 'integer', minimum: 0, maximum: 120 },
    color: { enum: ['red', 'green', 'blue'] }, tags: { type: 'array', items: { type: 'string', maxLength: 5 }, minItems: 1, maxItems: 3 },
  },
};
function validPerson(v) {
  const keys = v && typeof v === 'object' ? Object.keys(v).sort().join(',') : '';
  return keys === 'age,color,name,tags' && typeof v.name === 'string' && [...v.name].length <= 12 && Number.isInteger(v.age) &&
    v.age >= 0 && v.age <= 120 && ['red', 'green', 'blue'].includes(v.color) && Array.isArray(v.tags) && v.tags.length >= 1 &&
    v.tags.length <= 3 && v.tags.every((t) => typeof t === 'string' && [...t].length <= 5);
}
const chatMsgs = [{ role: 'user', content: 'Describe a person.' }];

await step('structured_json_schema_validates', async () => {
  const bad = [];
  for (const seed of [1, 2, 3]) {
    const r = await qwen.chat.completions.create({ model: 'tiny-qwen3', messages: chatMsgs, max_tokens: 300, temperature: 1, seed,
      response_format: { type: 'json_schema', json_schema: { name: 'person', strict: true, schema: PERSON } } });
    const c = r.choices[0];
    let v = null;
    try { v = JSON.parse(c.message.content); } catch (e) { bad.push(`seed ${seed}: not JSON ${JSON.stringify(c.message.content)}`); continue; }
    if (!validPerson(v) || c.finish_reason !== 'stop') bad.push(`seed ${seed}: ${c.message.content} (${c.finish_reason})`);
  }
  check('structured_json_schema_validates', bad.length === 0, bad.join('; '));
});

await step('structured_parse_helper', async () => {
  // The SDK's .parse() with a plain (zod-free) json_schema: message.parsed is the object.
  const r = await qwen.chat.completions.parse({ model: 'tiny-qwen3', messages: chatMsgs, max_tokens: 300, temperature: 0,
    response_format: { type: 'json_schema', json_schema: { name: 'person', strict: true, schema: PERSON } } });
  const m = r.choices[0].message;
  check('structured_parse_helper', validPerson(m.parsed) && !m.refusal, JSON.stringify(m));
});

await step('structured_streamed_json_object_and_guided', async () => {
  const bad = [];
  const stream = await qwen.chat.completions.create({ model: 'tiny-qwen3', messages: chatMsgs, max_tokens: 200, temperature: 1, seed: 7,
    response_format: { type: 'json_object' }, stream: true });
  let text = '', finish = null;
  for await (const c of stream) { text += c.choices[0]?.delta?.content ?? ''; finish = c.choices[0]?.finish_reason ?? finish; }
  try { const v = JSON.parse(text); if (typeof v !== 'object' || Array.isArray(v) || v === null) bad.push(`not an object: ${text}`); }
  catch { if (finish !== 'length') bad.push(`json_object stream not JSON: ${JSON.stringify(text)} (${finish})`); }
  const choice = await stories.completions.create({ model: 'stories260K', prompt: 'Once upon', max_tokens: 20, guided_choice: ['yes', 'no', 'maybe'] });
  if (!['yes', 'no', 'maybe'].includes(choice.choices[0].text)) bad.push(`guided_choice ${JSON.stringify(choice.choices[0].text)}`);
  const re = await stories.completions.create({ model: 'stories260K', prompt: 'Once upon', max_tokens: 20, temperature: 1, seed: 3, guided_regex: '[a-c]{2}-\\d{3}' });
  if (!/^[a-c]{2}-\d{3}$/.test(re.choices[0].text) || re.choices[0].finish_reason !== 'stop') bad.push(`guided_regex ${JSON.stringify(re.choices[0])}`);
  const gb = await stories.completions.create({ model: 'stories260K', prompt: 'Once upon', max_tokens: 20, grammar: 'root ::= ("ab" | "cd") [0-9]' });
  if (!/^(ab|cd)[0-9]$/.test(gb.choices[0].text)) bad.push(`grammar ${JSON.stringify(gb.choices[0].text)}`);
  check('structured_streamed_json_object_and_guided', bad.length === 0, bad.join('; '));
});

const TOOLS = [
  { type: 'function', function: { name: 'get_weather', description: 'weather', parameters: { type: 'object', additionalProperties: false,
    required: ['city', 'unit'], properties: { city: { type: 'string', maxLength: 10 }, unit: { enum: ['c', 'f'] } } } } },
  { type: 'function', function: { name: 'add', parameters: { type: 'object', additionalProperties: false, required: ['a', 'b'],
    properties: { a: { type: 'integer', minimum: -100, maximum: 100 }, b: { type: 'integer', minimum: -100, maximum: 100 } } } } },
];
function validCall(tc) {
  let a;
  try { a = JSON.parse(tc.function.arguments); } catch { return false; }
  if (tc.function.name === 'get_weather') return Object.keys(a).sort().join() === 'city,unit' && typeof a.city === 'string' && [...a.city].length <= 10 && ['c', 'f'].includes(a.unit);
  if (tc.function.name === 'add') return Object.keys(a).sort().join() === 'a,b' && Number.isInteger(a.a) && Number.isInteger(a.b) && Math.abs(a.a) <= 100 && Math.abs(a.b) <= 100;
  return false;
}

await step('tool_choice_required_and_named', async () => {
  const bad = [];
  for (const seed of [1, 2]) {
    const r = await qwen.chat.completions.create({ model: 'tiny-qwen3', messages: chatMsgs, max_tokens: 300, temperature: 1, seed, tools: TOOLS, tool_choice: 'required' });
    const c = r.choices[0];
    if (c.finish_reason !== 'tool_calls' || c.message.tool_calls?.length !== 1 || !validCall(c.message.tool_calls[0])) bad.push(`required seed ${seed}: ${JSON.stringify(c)}`);
  }
  const named = await qwen.chat.completions.create({ model: 'tiny-qwen3', messages: chatMsgs, max_tokens: 300, temperature: 1, seed: 5, tools: TOOLS,
    tool_choice: { type: 'function', function: { name: 'add' } }, stream: true });
  const calls = [];
  let finish = null;
  for await (const ch of named) { for (const tc of ch.choices[0]?.delta?.tool_calls ?? []) calls.push(tc); finish = ch.choices[0]?.finish_reason ?? finish; }
  if (finish !== 'tool_calls' || calls.length !== 1 || calls[0].function.name !== 'add' || !validCall(calls[0])) bad.push(`named: ${JSON.stringify(calls)} ${finish}`);
  const none = await qwen.chat.completions.create({ model: 'tiny-qwen3', messages: chatMsgs, max_tokens: 4, temperature: 0, tools: TOOLS, tool_choice: 'none' });
  const plain = await qwen.chat.completions.create({ model: 'tiny-qwen3', messages: chatMsgs, max_tokens: 4, temperature: 0 });
  if (none.usage.prompt_tokens !== plain.usage.prompt_tokens) bad.push(`tool_choice none still shows the tools: ${none.usage.prompt_tokens} vs ${plain.usage.prompt_tokens}`);
  check('tool_choice_required_and_named', bad.length === 0, bad.join('; '));
});

await step('n_choices_fork_one_prefill', async () => {
  const bad = [];
  // Greedy: every choice is the greedy answer (forked KV must equal a fresh prefill).
  const e = expected.find((x) => x.prompt.length > 16) ?? expected[0];
  const before = (await metrics(S)).get('kiln_prefix_cache_hit_tokens_total');
  const prompt = [...e.prompt.slice(0, -1), 13]; // unseen: nothing cached, so hits come from the fork
  const g = await stories.completions.create({ model: 'stories260K', prompt, max_tokens: N, temperature: 0, ignore_eos: true, return_token_ids: true, n: 3 });
  const after = (await metrics(S)).get('kiln_prefix_cache_hit_tokens_total');
  const alone = await stories.completions.create({ model: 'stories260K', prompt, max_tokens: N, temperature: 0, ignore_eos: true, return_token_ids: true });
  if (g.choices.length !== 3 || !g.choices.every((c, i) => c.index === i && same(c.token_ids, alone.choices[0].token_ids))) bad.push(`greedy n=3 ${JSON.stringify(g.choices)}`);
  if (!(after - before >= 2 * (prompt.length - 1))) bad.push(`forks shared no KV: hit tokens ${before} -> ${after}`);
  if (g.usage.completion_tokens !== 3 * N) bad.push(`usage ${JSON.stringify(g.usage)}`);
  // Sampled chat: two choices, each its own seed stream (choice 1 of seed s = choice 0 of seed s+1).
  const ask = (n, seed) => qwen.chat.completions.create({ model: 'tiny-qwen3', messages: chatMsgs, max_tokens: 8, temperature: 1, seed, n, ignore_eos: true });
  const two = await ask(2, 40), next = await ask(1, 41);
  if (two.choices.length !== 2 || two.choices[1].message.content !== next.choices[0].message.content ||
      two.choices[0].message.content === two.choices[1].message.content) bad.push(`seeds ${JSON.stringify(two.choices.map((c) => c.message.content))} vs ${next.choices[0].message.content}`);
  // Streamed: chunks carry their choice's index and every choice finishes.
  const stream = await qwen.chat.completions.create({ model: 'tiny-qwen3', messages: chatMsgs, max_tokens: 8, temperature: 1, seed: 40, n: 2, ignore_eos: true, stream: true });
  const texts = ['', ''], fins = [null, null];
  for await (const c of stream) for (const ch of c.choices) { texts[ch.index] += ch.delta.content ?? ''; fins[ch.index] = ch.finish_reason ?? fins[ch.index]; }
  if (texts[0] !== two.choices[0].message.content || texts[1] !== two.choices[1].message.content || fins.some((f) => f !== 'length'))
    bad.push(`stream ${JSON.stringify(texts)} ${fins}`);
  // best_of: n answers out of best_of, the most probable ones.
  const bo = await stories.completions.create({ model: 'stories260K', prompt: 'Once upon', max_tokens: 6, temperature: 1, seed: 9, n: 2, best_of: 4, logprobs: 0 });
  const sums = bo.choices.map((c) => c.logprobs.token_logprobs.reduce((a, b) => a + b, 0));
  if (bo.choices.length !== 2 || sums[0] < sums[1] - 1e-4 || bo.usage.completion_tokens !== 24) bad.push(`best_of ${JSON.stringify(sums)} ${JSON.stringify(bo.usage)}`);
  check('n_choices_fork_one_prefill', bad.length === 0, bad.join('; '));
});

await step('embeddings_hidden_size_unit_norm', async () => {
  const bad = [];
  const norm = (v) => Math.sqrt(v.reduce((a, x) => a + x * x, 0));
  const r = await qwen.embeddings.create({ model: 'tiny-qwen3', input: ['The cat sat.', 'A dog ran.', 'The cat sat.'], encoding_format: 'float' });
  const e = r.data.map((d) => d.embedding);
  if (r.data.length !== 3 || !e.every((v) => v.length === 64 && Math.abs(norm(v) - 1) < 1e-4)) bad.push(`shape ${r.data.map((d) => d.embedding.length)} norms ${e.map(norm)}`);
  if (!same(e[0], e[2]) || same(e[0], e[1]) || !r.data.every((d, i) => d.index === i)) bad.push('same text, same vector; different text, different vector');
  // token ids embed as their text does; one input alone as in a batch; dimensions truncates then renormalises
  const ids = (await (await fetch(`${Q}/tokenize`, { method: 'POST', headers: { Authorization: `Bearer ${KEY}` }, body: JSON.stringify({ prompt: 'A dog ran.' }) })).json()).tokens;
  const byIds = await qwen.embeddings.create({ model: 'tiny-qwen3', input: [ids], encoding_format: 'float' });
  if (byIds.data[0].embedding.some((x, i) => Math.abs(x - e[1][i]) > 1e-5)) bad.push('token ids differ from text');
  const small = await qwen.embeddings.create({ model: 'tiny-qwen3', input: 'A dog ran.', dimensions: 8, encoding_format: 'float' });
  const head = e[1].slice(0, 8), hn = norm(head);
  if (small.data[0].embedding.length !== 8 || small.data[0].embedding.some((x, i) => Math.abs(x - head[i] / hn) > 1e-5)) bad.push(`dimensions ${small.data[0].embedding}`);
  // the SDK's default encoding is base64 (decoded client-side): the same vector
  const b64 = await qwen.embeddings.create({ model: 'tiny-qwen3', input: 'A dog ran.' });
  if (b64.data[0].embedding.some((x, i) => Math.abs(x - e[1][i]) > 1e-6)) bad.push('base64 differs');
  try { await qwen.embeddings.create({ model: 'tiny-qwen3', input: 'x', dimensions: 65 }); bad.push('dimensions > hidden accepted'); }
  catch (err) { if (!(err instanceof OpenAI.BadRequestError) || err.param !== 'dimensions') bad.push(`dimensions 65: ${err}`); }
  if (r.usage.prompt_tokens < 6) bad.push(`usage ${JSON.stringify(r.usage)}`);
  check('embeddings_hidden_size_unit_norm', bad.length === 0, bad.join('; '));
});

await step('responses_create_plain_streamed_tools', async () => {
  const bad = [];
  const ask = { model: 'tiny-qwen3', instructions: 'Be brief.', input: 'Hello!', max_output_tokens: 12, temperature: 0 };
  const r = await qwen.responses.create(ask);
  const chat = await qwen.chat.completions.create({ model: 'tiny-qwen3', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello!' }],
    max_tokens: 12, temperature: 0 });
  if (r.object !== 'response' || typeof r.output_text !== 'string' || r.output_text !== chat.choices[0].message.content ||
      r.usage.input_tokens !== chat.usage.prompt_tokens || !['completed', 'incomplete'].includes(r.status)) bad.push(`plain ${JSON.stringify(r)} vs ${JSON.stringify(chat.choices[0].message.content)}`);
  const stream = await qwen.responses.create({ ...ask, stream: true });
  let deltas = '', types = [], done = null;
  for await (const ev of stream) { types.push(ev.type); if (ev.type === 'response.output_text.delta') deltas += ev.delta; if (ev.type === 'response.completed') done = ev.response; }
  if (types[0] !== 'response.created' || deltas !== r.output_text || done?.output?.[0]?.content?.[0]?.text !== r.output_text) bad.push(`stream ${types} ${JSON.stringify(deltas)}`);
  // message items, a function call and its output (the round trip), and a forced call out
  const t = await qwen.responses.create({ model: 'tiny-qwen3', max_output_tokens: 200, temperature: 1, seed: 2, tool_choice: 'required',
    tools: TOOLS.map((x) => ({ type: 'function', name: x.function.name, parameters: x.function.parameters })),
    input: [{ role: 'user', content: [{ type: 'input_text', text: 'Weather?' }] },
      { type: 'function_call', call_id: 'c1', name: 'get_weather', arguments: '{"city":"Paris","unit":"c"}' },
      { type: 'function_call_output', call_id: 'c1', output: '{"temp":21}' }] });
  const fc = t.output.find((o) => o.type === 'function_call');
  if (!fc || !validCall({ function: { name: fc.name, arguments: fc.arguments } })) bad.push(`tool ${JSON.stringify(t.output)}`);
  try { await qwen.responses.create({ model: 'tiny-qwen3', input: 'x', previous_response_id: 'resp_1' }); bad.push('previous_response_id accepted'); }
  catch (e) { if (!(e instanceof OpenAI.BadRequestError) || e.param !== 'previous_response_id') bad.push(`previous_response_id: ${e}`); }
  check('responses_create_plain_streamed_tools', bad.length === 0, bad.join('; '));
});

await step('logit_bias_changes_greedy', async () => {
  const ask = (extra) => stories.completions.create({ model: 'stories260K', prompt: 'Once upon', max_tokens: 4, temperature: 0,
    ignore_eos: true, return_token_ids: true, ...extra });
  const base = await ask({});
  const first = base.choices[0].token_ids[0];
  const banned = await ask({ logit_bias: { [first]: -100 } });
  const forced = await ask({ logit_bias: { 300: 100 } });
  check('logit_bias_changes_greedy', banned.choices[0].token_ids[0] !== first && !banned.choices[0].token_ids.includes(first) &&
        forced.choices[0].token_ids.every((t) => t === 300),
        `base ${base.choices[0].token_ids} banned ${banned.choices[0].token_ids} forced ${forced.choices[0].token_ids}`);
});

await step('model_names_as_vllm', async () => {
  const bad = [];
  try { await stories.completions.create({ model: 'gpt-4o', prompt: 'a', max_tokens: 2 }); bad.push('unknown model accepted'); }
  catch (e) { if (!(e instanceof OpenAI.NotFoundError) || !e.message.includes('gpt-4o')) bad.push(`unknown: ${e}`); }
  const alias = await stories.completions.create({ model: 'stories', prompt: 'a', max_tokens: 2 });
  if (alias.model !== 'stories260K') bad.push(`alias answered as ${alias.model}`);
  const card = await stories.models.retrieve('stories260K');
  if (card.id !== 'stories260K' || card.max_model_len !== 512) bad.push(`card ${JSON.stringify(card)}`);
  try { await stories.models.retrieve('nope'); bad.push('unknown card'); } catch (e) { if (!(e instanceof OpenAI.NotFoundError)) bad.push(`card: ${e}`); }
  check('model_names_as_vllm', bad.length === 0, bad.join('; '));
});

await step('auth_and_error_codes', async () => {
  const bad = [];
  const no = await status(S, '/v1/models', { method: 'GET', key: null });
  if (no.code !== 401 || no.err.code !== 401 || no.headers.get('www-authenticate') !== 'Bearer') bad.push(`401 ${JSON.stringify(no.err)} ${no.headers.get('www-authenticate')}`);
  const nf = await status(S, '/v1/nothing', {});
  if (typeof nf.err.code !== typeof no.err.code) bad.push('code types differ');
  for (const k of ['sekritX', 'sekri', 'Sekrit', ' ']) if ((await status(S, '/v1/models', { method: 'GET', key: k })).code !== 401) bad.push(`key ${k} accepted`);
  const lower = await fetch(`${S}/v1/models`, { headers: { Authorization: `bearer ${KEY}` } });
  if (lower.status !== 200) bad.push(`lower-case scheme ${lower.status}`);
  for (const [url, path, want] of [[S, '/metrics', 401], [S, '/health', 401], [Q, '/metrics', 401], [Q, '/health', 200]]) {
    const r = await fetch(`${url}${path}`);
    if (r.status !== want) bad.push(`${path} without key on ${url === S ? 'stories' : 'qwen (--health-public)'}: ${r.status}`);
  }
  check('auth_and_error_codes', bad.length === 0, bad.join('; '));
});

await step('cors_preflight', async () => {
  const pre = (url, origin) => fetch(`${url}/v1/chat/completions`, { method: 'OPTIONS', headers: { Origin: origin,
    'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization,content-type' } });
  const ok = await pre(S, 'http://app.example'), other = await pre(S, 'http://evil.example'), none = await pre(Q, 'http://app.example');
  const post = await fetch(`${S}/v1/models`, { headers: { Origin: 'http://app.example', Authorization: `Bearer ${KEY}` } });
  check('cors_preflight', ok.status === 204 && ok.headers.get('access-control-allow-origin') === 'http://app.example' &&
        /authorization/i.test(ok.headers.get('access-control-allow-headers')) && /POST/.test(ok.headers.get('access-control-allow-methods')) &&
        post.headers.get('access-control-allow-origin') === 'http://app.example' &&
        other.status === 403 && !other.headers.get('access-control-allow-origin') && none.status === 403,
        `allowed ${ok.status} ${ok.headers.get('access-control-allow-origin')}, other ${other.status}, none ${none.status}, post ${post.headers.get('access-control-allow-origin')}`);
});

await step('tokenize_detokenize', async () => {
  const t = await status(S, '/tokenize', { body: { prompt: 'Once upon' } });
  const tj = await (await fetch(`${S}/tokenize`, { method: 'POST', headers: { Authorization: `Bearer ${KEY}` }, body: JSON.stringify({ model: 'stories260K', prompt: 'Once upon', return_token_strs: true }) })).json();
  const d = await (await fetch(`${S}/detokenize`, { method: 'POST', headers: { Authorization: `Bearer ${KEY}` }, body: JSON.stringify({ tokens: tj.tokens.slice(1) }) })).json();
  const chat = await (await fetch(`${Q}/tokenize`, { method: 'POST', headers: { Authorization: `Bearer ${KEY}` }, body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] }) })).json();
  const badId = await status(S, '/detokenize', { body: { tokens: [1, 99999] } });
  check('tokenize_detokenize', t.code === 200 && tj.count === 3 && tj.tokens[0] === 1 && tj.max_model_len === 512 && tj.token_strs[1] === '▁Once' &&
        d.prompt === 'Once upon' && chat.count > 3 && badId.code === 400, `${JSON.stringify(tj)} ${JSON.stringify(d)} ${JSON.stringify(chat)} ${badId.code}`);
});

// ---- round trips (issue 17 item 3) ----
await step('tool_round_trip_content_null', async () => {
  const tools = [{ type: 'function', function: { name: 'get_weather', description: 'weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
  const r = await qwen.chat.completions.create({ model: 'tiny-qwen3', max_tokens: 4, tools, messages: [
    { role: 'user', content: 'Weather in Paris?' },
    { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
    { role: 'tool', tool_call_id: 'call_1', content: '18C' }] });
  const withKw = await qwen.chat.completions.create({ model: 'tiny-qwen3', max_tokens: 1, messages: [{ role: 'user', content: 'hello' }],
    chat_template_kwargs: { messages: [{ role: 'user', content: 'a much longer message that replaces the validated one' }] } });
  const without = await qwen.chat.completions.create({ model: 'tiny-qwen3', max_tokens: 1, messages: [{ role: 'user', content: 'hello' }] });
  check('tool_round_trip_content_null', r.choices.length === 1 && r.usage.prompt_tokens > 20 && withKw.usage.prompt_tokens === without.usage.prompt_tokens,
        `${JSON.stringify(r.usage)} kwargs ${withKw.usage.prompt_tokens} vs ${without.usage.prompt_tokens}`);
});

// ---- hostile clients (issue 19 item 4) ----
// A raw HTTP exchange on one socket: sends `head` (+ body), optionally half-closes, returns what came back.
function raw(url, text, { halfClose = false, localAddress, timeoutMs = 20000 } = {}) {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const sock = net.connect({ host: hostname, port: Number(port), localAddress, allowHalfOpen: true });
    let got = '';
    const done = () => { clearTimeout(timer); resolve(got); };
    const timer = setTimeout(() => { sock.destroy(); done(); }, timeoutMs);
    sock.on('connect', () => { sock.write(text); if (halfClose) sock.end(); });
    sock.on('data', (d) => { got += d.toString(); });
    sock.on('end', () => { sock.end(); });
    sock.on('close', done);
    sock.on('error', done);
  });
}
const post = (path, body, extra = '') => `POST ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nContent-Type: application/json\r\n` +
  `Content-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;

await step('half_closed_request_answered', async () => {
  const body = JSON.stringify({ model: 'stories260K', prompt: 'Once upon', max_tokens: 3 });
  const [plain, streamed] = await Promise.all([raw(S, post('/v1/completions', body), { halfClose: true }),
    raw(S, post('/v1/completions', JSON.stringify({ prompt: 'Once', max_tokens: 3, stream: true })), { halfClose: true })]);
  check('half_closed_request_answered', plain.startsWith('HTTP/1.1 200') && plain.includes('"text_completion"') &&
        streamed.startsWith('HTTP/1.1 200') && streamed.includes('[DONE]'), `${plain.slice(0, 200)} | ${streamed.slice(0, 200)}`);
});

await step('expect_100_oversize_is_413', async () => {
  const got = await raw(S, `POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nExpect: 100-continue\r\nContent-Length: 100000000\r\n\r\n`, { timeoutMs: 5000 });
  check('expect_100_oversize_is_413', got.startsWith('HTTP/1.1 413'), got.slice(0, 120));
});

await step('nul_in_json_string', async () => {
  const r = await status(S, '/v1/completions', { raw: '{"prompt":"Once\\u0000upon","max_tokens":2}' });
  check('nul_in_json_string', r.code === 200, `${r.code} ${JSON.stringify(r.err)}`);
});

await step('metric_labels_from_route_table', async () => {
  // 413s on 70 distinct crafted URLs (one tries to inject a line), then a new series must still appear.
  const big = 'x'.repeat(70 * 1024);
  for (let i = 0; i < 70; i++) await status(S, `/v1/evil${i}%22%7D%201%0Akiln_injected%7Ba%3D%22${i}`, { raw: big });
  await status(S, '/tokenize', { body: { prompt: 'a', model: 'not-this-one' } }); // a first 404 on /tokenize
  const m = await metrics(S);
  check('metric_labels_from_route_table', !/kiln_injected|evil/.test(m.text) && /endpoint="other",status="413"\} 70/.test(m.text) &&
        /endpoint="\/tokenize",status="404"\} 1/.test(m.text), m.text.split('\n').filter((l) => l.startsWith('kiln_requests_total')).join(' | '));
});

await step('slow_clients_dropped_others_served', async () => {
  // From 127.0.0.2: 24 connections trickling a header byte every 300 ms. The qwen server allows 16 per
  // address (the rest are refused at once) and drops each trickler at its 2 s read deadline, while a
  // client from 127.0.0.1 is served meanwhile. Bounded: every loop stops after 8 s.
  const t0 = Date.now();
  const closedAt = [];
  const socks = Array.from({ length: 24 }, (_, i) => new Promise((resolve) => {
    const { hostname, port } = new URL(Q);
    const sock = net.connect({ host: hostname, port: Number(port), localAddress: '127.0.0.2' });
    let n = 0;
    const header = `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow-${i}: ${'a'.repeat(200)}`;
    const tick = setInterval(() => { if (n < header.length && Date.now() - t0 < 8000) sock.write(header[n++]); else { clearInterval(tick); sock.destroy(); } }, 300);
    const end = () => { clearInterval(tick); closedAt.push(Date.now() - t0); resolve(); };
    sock.on('close', end);
    sock.on('error', () => {});
  }));
  await sleep(500);
  const served = await qwen.chat.completions.create({ model: 'tiny-qwen3', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
  await Promise.all(socks);
  closedAt.sort((a, b) => a - b);
  const early = closedAt.filter((t) => t < 1000).length, late = closedAt.at(-1);
  check('slow_clients_dropped_others_served', served.choices.length === 1 && early >= 8 && late < 6000,
        `refused at once ${early}, last closed at ${late} ms, all ${closedAt.join(',')}`);
});

// ---- last: SIGTERM drains the stories server ----
await step('sigterm_drains', async () => {
  // SIGTERM while a stream is running: the stream must still complete, then the port closes.
  const stream = await stories.completions.create({ model: 'stories', prompt: [1, 40], max_tokens: 400, ignore_eos: true,
    temperature: 0, stream: true, stream_options: { include_usage: true } });
  let usage = null, chunks = 0;
  for await (const c of stream) {
    if (++chunks === 1) process.kill(Number(process.env.STORIES_PID), 'SIGTERM');
    if (c.usage) usage = c.usage;
  }
  await sleep(300);
  let refused = false;
  try { await fetch(`${S}/health`, { signal: AbortSignal.timeout(2000) }); } catch { refused = true; }
  check('sigterm_drains', usage?.completion_tokens === 400 && refused, `usage ${JSON.stringify(usage)}, refused ${refused}`);
});

await step('drain_timeout_ends_streams_properly', async () => {
  // --drain 1 on the qwen server: new requests during the drain are answered 503 (not refused); a stream
  // still running when the drain time runs out ends with an error event, its final chunk and [DONE].
  const res = await fetch(`${Q}/v1/completions`, { method: 'POST', headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt: 'go', max_tokens: 3000, ignore_eos: true, stream: true }) });
  const reader = res.body.getReader();
  let body = '', during = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    body += new TextDecoder().decode(value);
    if (!during) {
      process.kill(Number(process.env.QWEN_PID), 'SIGINT');
      await sleep(200);
      during = await status(Q, '/v1/completions', { body: { prompt: 'a', max_tokens: 2 } });
    }
  }
  const events = body.split('\n\n').filter((x) => x);
  const err = events.find((e) => e.includes('"error"'));
  check('drain_timeout_ends_streams_properly', body.endsWith('data: [DONE]\n\n') && err && JSON.parse(err.slice(6)).error.code === 503 &&
        events.some((e) => e.includes('"finish_reason":"abort"')) && during?.code === 503 && during.headers.get('retry-after'),
        `during the drain ${during?.code}; ${body.slice(-400)}`);
});

process.exit(results.every(Boolean) ? 0 : 1);

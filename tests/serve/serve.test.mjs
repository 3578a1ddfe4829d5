// serve.test.mjs — drives a running `kiln serve` with the official openai client (and raw fetch for the
// malformed requests a client library would refuse to send). Prints one "PASS name" / "FAIL name: why"
// line per check. Environment (set by tests/cli/serve.sh):
//   STORIES_URL, STORIES_PID  server on stories260K, started with --api-key sekrit --max-body-kb 64
//   QWEN_URL                  server on tiny-qwen3, started with --max-batch 2 --max-queue 2
//   EXPECTED                  JSON file: [{prompt:[ids], ids:[greedy ids from kiln generate]}]
//   RUN_CHAT, RUN_TEXT        `kiln run --greedy --json` output: "Hello there!" on tiny-qwen3 (24 tokens),
//                             "Once upon a time" on stories260K (40 tokens)
//   MAX_TOKENS                tokens asked in the greedy comparisons
import OpenAI from 'openai';
import { readFileSync } from 'node:fs';

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
const qwen = new OpenAI({ baseURL: `${Q}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120000 });
const expected = JSON.parse(readFileSync(process.env.EXPECTED, 'utf8'));
const N = Number(process.env.MAX_TOKENS);
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

async function metrics(url) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const get = (name) => { const m = text.match(new RegExp(`^${name} (\\S+)$`, 'm')); return m ? Number(m[1]) : NaN; };
  return { text, get };
}

// Greedy completion of token ids through the client; return_token_ids is vLLM's extension.
const greedy = (prompt) => stories.completions.create({
  model: 'stories260K', prompt, max_tokens: N, temperature: 0, ignore_eos: true, return_token_ids: true,
});

await step('models_list', async () => {
  const list = await stories.models.list();
  check('models_list', list.data.length === 1 && list.data[0].id === 'stories260K', JSON.stringify(list.data));
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
  const a = await stories.completions.create({ model: 'x', prompt: 'Once upon a time', max_tokens: 40, temperature: 0 });
  const full = a.choices[0].text;
  const stop = full.slice(8, 11);
  const b = await stories.completions.create({ model: 'x', prompt: 'Once upon a time', max_tokens: 40, temperature: 0, stop: [stop] });
  check('text_prompt_and_stop', full.length > 10 && b.choices[0].text === full.slice(0, full.indexOf(stop)) &&
        b.choices[0].finish_reason === 'stop', `full ${JSON.stringify(full)} stop ${JSON.stringify(stop)} got ${JSON.stringify(b.choices[0].text)}`);
});

await step('seeded_sampling_reproducible', async () => {
  const ask = () => stories.completions.create({ model: 'x', prompt: 'Once upon a time', max_tokens: 20, temperature: 1, top_p: 0.9, top_k: 40, seed: 7 });
  const [a, b] = [await ask(), await ask()];
  check('seeded_sampling_reproducible', a.choices[0].text === b.choices[0].text && a.choices[0].text.length > 0, `${a.choices[0].text} | ${b.choices[0].text}`);
});

await step('presence_frequency_penalties', async () => {
  const ask = (extra) => stories.completions.create({ model: 'x', prompt: 'Once upon a time', max_tokens: 60, temperature: 0, ignore_eos: true, ...extra });
  const [plain, again, pen] = [await ask({}), await ask({}), await ask({ frequency_penalty: 2, presence_penalty: 0.5 })];
  let range = false;
  try { await ask({ presence_penalty: 3 }); } catch (e) { range = e instanceof OpenAI.BadRequestError; }
  check('presence_frequency_penalties', plain.choices[0].text === again.choices[0].text && pen.choices[0].text !== plain.choices[0].text && range,
        `plain ${JSON.stringify(plain.choices[0].text)} penalised ${JSON.stringify(pen.choices[0].text)} range400 ${range}`);
});

await step('logprobs', async () => {
  const r = await stories.completions.create({ model: 'x', prompt: 'Once upon a time', max_tokens: 4, temperature: 0, logprobs: 3 });
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
  const askChat = () => qwen.chat.completions.create({ model: 'q', messages: [{ role: 'user', content: 'Hello there!' }],
    max_tokens: 24, temperature: 0, return_token_ids: true });
  const askText = () => stories.completions.create({ model: 's', prompt: 'Once upon a time', max_tokens: 40, temperature: 0, return_token_ids: true });
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
    ['n_not_1', '/v1/completions', { body: { prompt: 'a', n: 2 } }, 400],
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
  try { await stories.completions.create({ model: 'x', prompt: 'a', n: 2 }); bad.push('client n=2 accepted'); }
  catch (e) { if (!(e instanceof OpenAI.BadRequestError) || !/'n'/.test(e.message)) bad.push(`client: ${e}`); }
  const h = await (await fetch(`${S}/health`)).json();
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
  const stream = await qwen.chat.completions.create({ model: 'q', messages: [{ role: 'user', content: 'a long one' }], max_tokens: 3000,
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

// ---- last: SIGTERM drains the stories server ----
await step('sigterm_drains', async () => {
  // SIGTERM while a stream is running: the stream must still complete, then the port closes.
  const stream = await stories.completions.create({ model: 'x', prompt: [1, 40], max_tokens: 400, ignore_eos: true,
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

process.exit(results.every(Boolean) ? 0 : 1);

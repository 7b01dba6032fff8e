/* The Lua scripts: every state change of the queue is one script, so it is atomic
 * (no other client sees half of it) and costs one round trip however many keys it
 * touches. KEYS[1] is the queue's prefix "salvo:{name}:": every key a script
 * touches starts with it, so all of them hash to the same Redis Cluster slot.
 * Counters live twice: in the queue's `stats` hash and in the message's hash.
 *
 * The prelude's helpers:
 *   hdr(pay)       job header "<msg>\t<domain>\t<retry>\t<nrcpt>\t<last_error>\n"
 *                  -> msg id, recipient count (nil for a payload we cannot read)
 *   cnt(m, f, d)   adds d to counter f of the message and of the queue
 *   fin(m, now)    drops the body once the last recipient is final and no enqueue
 *                  is open; the rest of the message's hash expires after RET ms
 *                  (queue.retention, set by the script from its ARGV), and
 *                  sweep(now) then drops up to 16 expired ids from `msgs` and
 *                  their names from `names` (index `expiry`: "id:name" by due time)
 *   cancelled(mid) cancelled, or gone (its hash expired): its jobs are dropped
 *   shift(per, from, to)  moves per-message recipient counts between counters
 *   malformed(sid, pay)   a payload the scripts cannot read (written by hand?)
 *                  must not block the queue: it goes to the dead letters as it is
 *   move(mem, per) retry job -> ready stream. ZREM first: only the caller whose
 *                  ZREM removed the member moves it, so concurrent promoters never
 *                  duplicate a job. A member is the payload (which ends with LF)
 *                  plus a tag "#<sid>.<group>" naming the report that scheduled it:
 *                  identical payloads (an address listed twice in a campaign) stay
 *                  two members. The tag is dropped on the way back to the stream;
 *                  members without one (written by older versions) move as they are. */
#include "rq_int.h"

/* clang-format off */
#define LUA_PRELUDE \
    "local P = KEYS[1]\n" \
    "local S = P .. 'ready'\n" \
    "local function num(x) return tonumber(x) or 0 end\n" \
    "local function hdr(pay)\n" \
    "  local mid, n = string.match(pay, '^(%d+)\\t[^\\t]*\\t%d+\\t(%d+)\\t')\n" \
    "  return mid, tonumber(n)\n" \
    "end\n" \
    "local function cnt(m, field, d)\n" \
    "  if d ~= 0 then\n" \
    "    redis.call('HINCRBY', m, field, d)\n" \
    "    redis.call('HINCRBY', P .. 'stats', field, d)\n" \
    "  end\n" \
    "end\n" \
    "local RET = 0\n" \
    "local function sweep(now)\n" \
    "  local old = redis.call('ZRANGEBYSCORE', P .. 'expiry', '-inf', now, 'LIMIT', 0, 16)\n" \
    "  for _, e in ipairs(old) do\n" \
    "    local id, name = string.match(e, '^(%d+):(.*)$')\n" \
    "    if id then\n" \
    "      redis.call('DEL', P .. 'msg:' .. id)\n" \
    "      redis.call('ZREM', P .. 'msgs', id)\n" \
    "      if name ~= '' and redis.call('HGET', P .. 'names', name) == id then\n" \
    "        redis.call('HDEL', P .. 'names', name)\n" \
    "      end\n" \
    "    end\n" \
    "    redis.call('ZREM', P .. 'expiry', e)\n" \
    "  end\n" \
    "end\n" \
    "local function fin(m, now)\n" \
    "  local c = redis.call('HMGET', m, 'ready', 'inflight', 'scheduled', 'open', 'done', 'name')\n" \
    "  if num(c[1]) + num(c[2]) + num(c[3]) == 0 and c[4] == '0' and not c[5] then\n" \
    "    redis.call('HDEL', m, 'body')\n" \
    "    redis.call('HSET', m, 'done', now)\n" \
    "    if RET > 0 then\n" \
    "      redis.call('PEXPIRE', m, RET)\n" \
    "      redis.call('ZADD', P .. 'expiry', tonumber(now) + RET,\n" \
    "        string.sub(m, #P + 5) .. ':' .. (c[6] or ''))\n" \
    "    end\n" \
    "    sweep(now)\n" \
    "  end\n" \
    "end\n" \
    "local function cancelled(mid)\n" \
    "  local c = redis.call('HMGET', P .. 'msg:' .. mid, 'cancelled', 'from')\n" \
    "  return c[1] == '1' or not c[2]\n" \
    "end\n" \
    "local function shift(per, from, to)\n" \
    "  local tot = 0\n" \
    "  for mid, n in pairs(per) do\n" \
    "    local m = P .. 'msg:' .. mid\n" \
    "    redis.call('HINCRBY', m, from, -n)\n" \
    "    redis.call('HINCRBY', m, to, n)\n" \
    "    tot = tot + n\n" \
    "  end\n" \
    "  if tot ~= 0 then\n" \
    "    redis.call('HINCRBY', P .. 'stats', from, -tot)\n" \
    "    redis.call('HINCRBY', P .. 'stats', to, tot)\n" \
    "  end\n" \
    "  return tot\n" \
    "end\n" \
    "local function malformed(sid, pay)\n" \
    "  if sid then\n" \
    "    redis.call('XACK', S, 'salvo', sid)\n" \
    "    redis.call('XDEL', S, sid)\n" \
    "  end\n" \
    "  redis.call('XADD', P .. 'dead', 'MAXLEN', '~', 100000, '*', 'm', '', 'why',\n" \
    "    'malformed job payload', 'n', 0, 'j', pay or '')\n" \
    "end\n" \
    "local function move(mem, per)\n" \
    "  if redis.call('ZREM', P .. 'retry', mem) == 0 then return 0 end\n" \
    "  local pay = string.match(mem, '^(.*\\n)[^\\n]+$') or mem\n" \
    "  local mid, n = hdr(pay)\n" \
    "  if not mid then malformed(nil, pay) return 0 end\n" \
    "  if cancelled(mid) then return 0 end\n" \
    "  redis.call('XADD', S, '*', 'j', pay)\n" \
    "  per[mid] = (per[mid] or 0) + n\n" \
    "  return 1\n" \
    "end\n"

/* ARGV: from, body, tpl, fields, name, now -> message id, or {existing id} when the
 * name is taken (checked here, before any write, so a reused name changes nothing).
 * A name whose message expired (queue.retention) and is not swept yet is free. */
static const char enq_begin[] = LUA_PRELUDE
    "if ARGV[5] ~= '' then\n"
    "  local old = redis.call('HGET', P .. 'names', ARGV[5])\n"
    "  if old and redis.call('EXISTS', P .. 'msg:' .. old) == 1 then return {old} end\n"
    "end\n"
    "local id = redis.call('INCR', P .. 'seq')\n"
    "local m = P .. 'msg:' .. id\n"
    "redis.call('HSET', m, 'from', ARGV[1], 'body', ARGV[2], 'tpl', ARGV[3], 'fields', ARGV[4],\n"
    "  'name', ARGV[5], 'created', ARGV[6], 'open', '1', 'total', 0, 'ready', 0, 'inflight', 0,\n"
    "  'scheduled', 0, 'delivered', 0, 'bounced', 0, 'dead', 0)\n"
    "redis.call('ZADD', P .. 'msgs', id, id)\n"
    "if ARGV[5] ~= '' then redis.call('HSET', P .. 'names', ARGV[5], id) end\n"
    "return id\n";

/* ARGV: msg, payload... -> recipients added */
static const char enq_add[] = LUA_PRELUDE
    "local m = P .. 'msg:' .. ARGV[1]\n"
    "if redis.call('HGET', m, 'open') ~= '1' then\n"
    "  return redis.error_reply('ERR message ' .. ARGV[1] .. ' is not open for recipients')\n"
    "end\n"
    "local t = 0\n"
    "for i = 2, #ARGV do\n"
    "  local _, n = hdr(ARGV[i])\n"
    "  redis.call('XADD', S, '*', 'j', ARGV[i])\n"
    "  t = t + n\n"
    "end\n"
    "redis.call('HINCRBY', m, 'total', t)\n"
    "cnt(m, 'ready', t)\n"
    "return t\n";

/* ARGV: msg, now, retention_ms */
static const char enq_end[] = LUA_PRELUDE
    "RET = tonumber(ARGV[3]) or 0\n"
    "local m = P .. 'msg:' .. ARGV[1]\n"
    "if redis.call('EXISTS', m) == 0 then return 0 end\n"
    "redis.call('HSET', m, 'open', '0')\n"
    "fin(m, ARGV[2])\n"
    "return 1\n";

/* ARGV: consumer, count -> {sid, payload, ...}. Jobs of cancelled messages are
 * dropped here (cancel already counted their recipients as dead). */
static const char claim[] = LUA_PRELUDE
    "local r = redis.call('XREADGROUP', 'GROUP', 'salvo', ARGV[1], 'COUNT', ARGV[2],\n"
    "  'STREAMS', S, '>')\n"
    "local out = {}\n"
    "if not r then return out end\n"
    "local per = {}\n"
    "for _, e in ipairs(r[1][2]) do\n"
    "  local pay = e[2][2]\n"
    "  local mid, n = hdr(pay)\n"
    "  if not mid then\n"
    "    malformed(e[1], pay)\n"
    "  elseif cancelled(mid) then\n"
    "    redis.call('XACK', S, 'salvo', e[1])\n"
    "    redis.call('XDEL', S, e[1])\n"
    "  else\n"
    "    per[mid] = (per[mid] or 0) + n\n"
    "    out[#out + 1] = e[1]\n"
    "    out[#out + 1] = pay\n"
    "  end\n"
    "end\n"
    "shift(per, 'ready', 'inflight')\n"
    "return out\n";

/* ARGV: consumer, min_idle_ms, cursor, count, max_deliveries, now, dead_max,
 *   retention_ms -> {next_cursor, sid, payload, ...}
 * A job delivered more than max_deliveries times without a report has taken down
 * every consumer that claimed it (or cannot be delivered for another reason that
 * kills the process): it becomes a dead letter instead of looping forever. */
static const char reclaim[] = LUA_PRELUDE
    "RET = tonumber(ARGV[8]) or 0\n"
    "local r = redis.call('XAUTOCLAIM', S, 'salvo', ARGV[1], ARGV[2], ARGV[3], 'COUNT', ARGV[4])\n"
    "local maxd, now = tonumber(ARGV[5]), ARGV[6]\n"
    "local out = {r[1]}\n"
    "for _, e in ipairs(r[2]) do\n"
    "  if e[2] then\n"
    "    local pay = e[2][2]\n"
    "    local mid, n = hdr(pay)\n"
    "    local p = redis.call('XPENDING', S, 'salvo', e[1], e[1], 1)\n"
    "    local dlv = p[1] and tonumber(p[1][4]) or 0\n"
    "    if not mid then\n"
    "      malformed(e[1], pay)\n"
    "    elseif cancelled(mid) then\n"
    "      redis.call('XACK', S, 'salvo', e[1])\n"
    "      redis.call('XDEL', S, e[1])\n"
    "    elseif dlv > maxd then\n"
    "      redis.call('XACK', S, 'salvo', e[1])\n"
    "      redis.call('XDEL', S, e[1])\n"
    "      local m = P .. 'msg:' .. mid\n"
    "      redis.call('XADD', P .. 'dead', 'MAXLEN', '~', ARGV[7], '*', 'm', mid, 'why',\n"
    "        'claimed ' .. dlv .. ' times without an outcome (poison job?)', 'n', n, 'j', pay,\n"
    "        't', now, 'o', 'dead')\n"
    "      cnt(m, 'inflight', -n)\n"
    "      cnt(m, 'dead', n)\n"
    "      fin(m, now)\n"
    "    else\n"
    "      out[#out + 1] = e[1]\n"
    "      out[#out + 1] = pay\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if #out > 1 then redis.call('HINCRBY', P .. 'stats', 'reclaimed', (#out - 1) / 2) end\n"
    "return out\n";

/* ARGV: now, events_max, dead_max, retention_ms, then per job:
 *   sid, msg, ndelivered, nbounced, ndead, ngroups, {due, n, payload} x ngroups,
 *   nletters, {reason, n, payload, outcome} x nletters,
 *   nevents, {type, rcpt, reply, ms, tls_version, tls_cipher, tls_verified, tls_resumed}
 *   x nevents (tls_version "" = plaintext: the event says tls=none, no other TLS field)
 * -> number of duplicate reports (jobs someone had already acknowledged).
 * Events are kept even for duplicates: the delivery did happen again. */
static const char report[] = LUA_PRELUDE
    "local now, emax, dmax = ARGV[1], ARGV[2], ARGV[3]\n"
    "RET = tonumber(ARGV[4]) or 0\n"
    "local i = 5\n"
    "local dups = 0\n"
    "while i <= #ARGV do\n"
    "  local sid, mid = ARGV[i], ARGV[i + 1]\n"
    "  local nd, nb, nx = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])\n"
    "  local ng = tonumber(ARGV[i + 5])\n"
    "  i = i + 6\n"
    "  local m = P .. 'msg:' .. mid\n"
    "  local acked = redis.call('XACK', S, 'salvo', sid) == 1\n"
    "  local live = acked and not cancelled(mid)\n"
    "  if acked then redis.call('XDEL', S, sid) else dups = dups + 1 end\n"
    "  local sched, ndef = 0, 0\n"
    "  for g = 1, ng do\n"
    "    local c = tonumber(ARGV[i + 1])\n"
    "    ndef = ndef + c\n"
    "    local mem = ARGV[i + 2] .. '#' .. sid .. '.' .. g\n"
    "    if live and redis.call('ZADD', P .. 'retry', ARGV[i], mem) == 1 then\n"
    "      sched = sched + c\n"
    "    end\n"
    "    i = i + 3\n"
    "  end\n"
    "  local nl = tonumber(ARGV[i])\n"
    "  i = i + 1\n"
    "  for _ = 1, nl do\n"
    "    if acked then\n"
    "      redis.call('XADD', P .. 'dead', 'MAXLEN', '~', dmax, '*', 'm', mid, 'why', ARGV[i],\n"
    "        'n', ARGV[i + 1], 'j', ARGV[i + 2], 't', now, 'o', ARGV[i + 3])\n"
    "    end\n"
    "    i = i + 4\n"
    "  end\n"
    "  local ne = tonumber(ARGV[i])\n"
    "  i = i + 1\n"
    "  for _ = 1, ne do\n"
    "    local t = ARGV[i]\n"
    "    if not acked then t = 'duplicate-' .. t end\n"
    "    if ARGV[i + 4] == '' then\n"
    "      redis.call('XADD', P .. 'events', 'MAXLEN', '~', emax, '*', 't', t, 'm', mid,\n"
    "        'r', ARGV[i + 1], 'reply', ARGV[i + 2], 'ms', ARGV[i + 3], 'tls', 'none', 'at', now)\n"
    "    else\n"
    "      redis.call('XADD', P .. 'events', 'MAXLEN', '~', emax, '*', 't', t, 'm', mid,\n"
    "        'r', ARGV[i + 1], 'reply', ARGV[i + 2], 'ms', ARGV[i + 3],\n"
    "        'tls_version', ARGV[i + 4], 'tls_cipher', ARGV[i + 5],\n"
    "        'tls_verified', ARGV[i + 6], 'tls_resumed', ARGV[i + 7], 'at', now)\n"
    "    end\n"
    "    i = i + 8\n"
    "  end\n"
    "  if live then\n"
    "    cnt(m, 'inflight', -(nd + nb + nx + ndef))\n"
    "    cnt(m, 'scheduled', sched)\n"
    "    cnt(m, 'delivered', nd)\n"
    "    cnt(m, 'bounced', nb)\n"
    "    cnt(m, 'dead', nx)\n"
    "    fin(m, now)\n"
    "  end\n"
    "end\n"
    "if dups > 0 then redis.call('HINCRBY', P .. 'stats', 'duplicates', dups) end\n"
    "return dups\n";

/* ARGV: now, limit -> {jobs moved, next due ("-1" when none)} */
static const char promote[] = LUA_PRELUDE
    "local due = redis.call('ZRANGEBYSCORE', P .. 'retry', '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])\n"
    "local per, jobs = {}, 0\n"
    "for _, pay in ipairs(due) do jobs = jobs + move(pay, per) end\n"
    "shift(per, 'scheduled', 'ready')\n"
    "local nx = redis.call('ZRANGE', P .. 'retry', 0, 0, 'WITHSCORES')\n"
    "return {jobs, nx[2] or '-1'}\n";

/* ARGV: payload... (members of the retry set) -> recipients moved */
static const char move_now[] = LUA_PRELUDE
    "local per = {}\n"
    "for i = 1, #ARGV do move(ARGV[i], per) end\n"
    "return shift(per, 'scheduled', 'ready')\n";

/* ARGV: msg, now, dead_max, retention_ms -> recipients cancelled, -1 if no such message */
static const char cancel[] = LUA_PRELUDE
    "RET = tonumber(ARGV[4]) or 0\n"
    "local m = P .. 'msg:' .. ARGV[1]\n"
    "if redis.call('EXISTS', m) == 0 then return -1 end\n"
    "if cancelled(ARGV[1]) then return 0 end\n"
    "local c = redis.call('HMGET', m, 'ready', 'inflight', 'scheduled')\n"
    "local r, f, s = num(c[1]), num(c[2]), num(c[3])\n"
    "cnt(m, 'ready', -r)\n"
    "cnt(m, 'inflight', -f)\n"
    "cnt(m, 'scheduled', -s)\n"
    "cnt(m, 'dead', r + f + s)\n"
    "redis.call('HSET', m, 'cancelled', '1', 'open', '0')\n"
    "if r + f + s > 0 then\n"
    "  redis.call('XADD', P .. 'dead', 'MAXLEN', '~', ARGV[3], '*', 'm', ARGV[1],\n"
    "    'why', 'cancelled', 'n', r + f + s, 'j', '', 't', ARGV[2])\n"
    "end\n"
    "fin(m, ARGV[2])\n"
    "return r + f + s\n";

/* ARGV: msg, then ids of its entries in the dead-letter stream -> recipients made
 * ready again; -1 no such message, -2 cancelled, -3 its body was dropped (every
 * recipient was final). A letter moves only if this script's XDEL removed it, so
 * concurrent revivals never duplicate a job; its payload gets retry_num 0 and its
 * recipients leave the counter of the outcome recorded in `o` (letters written
 * before `o` existed stay). */
static const char revive[] = LUA_PRELUDE
    "local mid = ARGV[1]\n"
    "local m = P .. 'msg:' .. mid\n"
    "if redis.call('EXISTS', m) == 0 then return -1 end\n"
    "if cancelled(mid) then return -2 end\n"
    "if redis.call('HEXISTS', m, 'body') == 0 then return -3 end\n"
    "local tot = 0\n"
    "for i = 2, #ARGV do\n"
    "  local e = redis.call('XRANGE', P .. 'dead', ARGV[i], ARGV[i])[1]\n"
    "  if e then\n"
    "    local f = {}\n"
    "    for k = 1, #e[2], 2 do f[e[2][k]] = e[2][k + 1] end\n"
    "    local pay = f['j'] or ''\n"
    "    local jm, n = hdr(pay)\n"
    "    local o = f['o']\n"
    "    if f['m'] == mid and jm == mid and (o == 'dead' or o == 'bounced') and\n"
    "       redis.call('XDEL', P .. 'dead', ARGV[i]) == 1 then\n"
    "      pay = string.gsub(pay, '^(%d+\\t[^\\t]*\\t)%d+\\t', '%10\\t', 1)\n"
    "      redis.call('XADD', S, '*', 'j', pay)\n"
    "      cnt(m, o, -n)\n"
    "      cnt(m, 'ready', n)\n"
    "      tot = tot + n\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return tot\n";

/* clang-format on */

const char *const rq_script_src[RQS__COUNT] = {
    [RQS_ENQ_BEGIN] = enq_begin, [RQS_ENQ_ADD] = enq_add,    [RQS_ENQ_END] = enq_end,
    [RQS_CLAIM] = claim,         [RQS_RECLAIM] = reclaim,    [RQS_REPORT] = report,
    [RQS_PROMOTE] = promote,     [RQS_MOVE] = move_now,      [RQS_CANCEL] = cancel,
    [RQS_REVIVE] = revive,       [RQS_LIMIT] = rq_limit_lua, [RQS_CONC] = rq_conc_lua,
};

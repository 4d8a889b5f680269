"""The Lua scripts behind every shared transition: each decision is one atomic script in Redis.

Each model's circuit is a hash ``{prefix}:m:{model}`` (numbers as text, wall-clock seconds), its
recent healthy latency two capped lists, its recent failures a capped list, the half-open trial a
lock ``{prefix}:trial:{model}`` with an expiry (a crashed holder cannot block the model). A script
that changes a circuit bumps its ``version`` and publishes the new state on ``{prefix}:events``, and
returns it, so the caller applies it without another round trip. A key of the wrong type (someone
else's data, a hostile write) is replaced, and the reply says so (``healed``), rather than failing
every transition of that model. No key, prompt or reply is ever stored: only numbers, the model id
and a short failure reason.
"""

from __future__ import annotations

from ..router.latency import GAP_SAMPLES, TTFT_SAMPLES
from ..router.sharing import SharedState

# Shared helpers, prepended to every script.
_PRELUDE = r"""
local healed = 0
local function own(key, kind)
  local t = redis.call('TYPE', key).ok
  if t ~= kind and t ~= 'none' then redis.call('DEL', key); healed = 1 end
end
local function num(h, field)
  local v = tonumber(redis.call('HGET', h, field))
  if v == nil or v ~= v or v == math.huge or v == -math.huge then return 0 end
  return v
end
local function fmt(x) return string.format('%.6f', x) end
local function state(h, model)
  local reason = redis.call('HGET', h, 'reason')
  if not reason or reason == '' then reason = cjson.null end
  return cjson.encode({model = model, failures = num(h, 'failures'), open_until = num(h, 'open_until'),
    failed_at = num(h, 'failed_at'), reason = reason, told_until = num(h, 'told_until'),
    successes = num(h, 'successes'), total_failures = num(h, 'total_failures'),
    tool_less = num(h, 'tool_less'), version = num(h, 'version'), healed = healed})
end
local function publish(h, model, channel)
  redis.call('SADD', KEYS[2], model)
  redis.call('HINCRBY', h, 'version', 1)
  local s = state(h, model)
  redis.call('PUBLISH', channel, s)
  return s
end
"""

# KEYS: hash, models set, trial lock, recent failures list.
# ARGV: model, now, reason, retry_after ('' = none), exclude ('1'/'0'), base, max, exclude cooldown, channel.
FAILURE = _PRELUDE + r"""
local h = KEYS[1]
own(h, 'hash'); own(KEYS[2], 'set'); own(KEYS[4], 'list')
local now = tonumber(ARGV[2])
local failures = num(h, 'failures') + 1
local excl = tonumber(ARGV[8])
local cooldown
local told = 0
if ARGV[5] == '1' then
  cooldown = excl
elseif ARGV[4] ~= '' then
  cooldown = math.min(math.max(tonumber(ARGV[4]), 0), excl)
  told = now + cooldown
else
  cooldown = math.min(tonumber(ARGV[6]) * 2 ^ (failures - 1), tonumber(ARGV[7]))
end
-- a later, shorter verdict never shortens a cooldown already promised (e.g. a 404 exclusion)
local open_until = math.max(num(h, 'open_until'), now + cooldown)
redis.call('HSET', h, 'failures', failures, 'total_failures', num(h, 'total_failures') + 1,
  'open_until', fmt(open_until), 'failed_at', fmt(math.max(num(h, 'failed_at'), now)),
  'told_until', fmt(told), 'reason', ARGV[3])
redis.call('DEL', KEYS[3])
redis.call('LPUSH', KEYS[4], fmt(now) .. ' ' .. ARGV[3])
redis.call('LTRIM', KEYS[4], 0, 19)
return publish(h, ARGV[1], ARGV[9])
"""

# KEYS: hash, models set, trial lock. ARGV: model, sent ('' = untracked), channel.
SUCCESS = _PRELUDE + r"""
local h = KEYS[1]
own(h, 'hash'); own(KEYS[2], 'set')
redis.call('HSET', h, 'successes', num(h, 'successes') + 1)
local failures = num(h, 'failures')
-- only a request sent after the latest failure verdict closes the circuit
if failures == 0 or (ARGV[2] ~= '' and tonumber(ARGV[2]) < num(h, 'failed_at')) then
  redis.call('SADD', KEYS[2], ARGV[1])
  return state(h, ARGV[1])
end
redis.call('HSET', h, 'failures', 0, 'open_until', 0, 'told_until', 0, 'reason', '')
redis.call('DEL', KEYS[3])
return publish(h, ARGV[1], ARGV[3])
"""

# KEYS: hash, models set, trial lock. ARGV: token, now, ttl in ms. Returns 1 if this caller holds the trial.
CLAIM = _PRELUDE + r"""
local h = KEYS[1]
own(h, 'hash'); own(KEYS[3], 'string')
if num(h, 'failures') == 0 or tonumber(ARGV[2]) < num(h, 'open_until') then return 0 end
if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[3]) then return 1 end
if redis.call('GET', KEYS[3]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
  return 1
end
return 0
"""

# KEYS: trial lock. ARGV: token, ttl in ms ('0' = release). Only the holder may extend or release.
LEASE = r"""
if redis.call('TYPE', KEYS[1]).ok ~= 'string' then return 0 end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then return redis.call('DEL', KEYS[1]) end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""

# KEYS: hash, models set. ARGV: model, channel.
TOOL_LESS = _PRELUDE + r"""
own(KEYS[1], 'hash'); own(KEYS[2], 'set')
if num(KEYS[1], 'tool_less') == 1 then return state(KEYS[1], ARGV[1]) end
redis.call('HSET', KEYS[1], 'tool_less', 1)
return publish(KEYS[1], ARGV[1], ARGV[2])
"""

# KEYS: hash, models set, ttft list, gap list, first-sentence list. ARGV: model, ttfts (comma list, '' = none), cost
# ('' = none), ttft cap (also the first-sentence cap), gap cap, first-sentence times (comma list), then the gaps.
# Samples are appended, never a whole summary rewritten (no lost updates).
REPLY = _PRELUDE + r"""
own(KEYS[1], 'hash'); own(KEYS[2], 'set'); own(KEYS[3], 'list'); own(KEYS[4], 'list'); own(KEYS[5], 'list')
redis.call('SADD', KEYS[2], ARGV[1])
for _, list in ipairs({{KEYS[3], ARGV[2]}, {KEYS[5], ARGV[6]}}) do
  if list[2] ~= '' then
    for sample in string.gmatch(list[2], '[^,]+') do redis.call('RPUSH', list[1], sample) end
    redis.call('LTRIM', list[1], -tonumber(ARGV[4]), -1)
  end
end
if #ARGV > 6 then
  redis.call('RPUSH', KEYS[4], unpack(ARGV, 7))
  redis.call('LTRIM', KEYS[4], -tonumber(ARGV[5]), -1)
end
if ARGV[3] ~= '' then redis.call('HINCRBYFLOAT', KEYS[1], 'cost', ARGV[3]) end
return healed
"""

# KEYS: hash, models set. ARGV: model, channel, failures, open_until, failed_at, reason, told_until,
# total_failures, tool_less. Re-seeds a model that Redis lost (a restart without persistence) from a
# process's local copy; never overwrites what the fleet already holds.
MERGE = _PRELUDE + r"""
own(KEYS[1], 'hash'); own(KEYS[2], 'set')
if redis.call('HEXISTS', KEYS[1], 'version') == 1 then return state(KEYS[1], ARGV[1]) end
redis.call('HSET', KEYS[1], 'failures', ARGV[3], 'open_until', ARGV[4], 'failed_at', ARGV[5], 'reason', ARGV[6],
  'told_until', ARGV[7], 'total_failures', ARGV[8], 'tool_less', ARGV[9])
return publish(KEYS[1], ARGV[1], ARGV[2])
"""


Samples = tuple[list[float], list[float], float, list[float]]
"""A model's gathered TTFTs, gaps, cost and first-sentence times, written by :data:`REPLY`."""


def reply_args(model: str, samples: Samples) -> list[str]:
    """:data:`REPLY`'s arguments for ``model``'s gathered ``samples``.

    >>> reply_args("m", ([0.3], [0.01, 0.02], 0.0, [0.5]))
    ['m', '0.3', '', '64', '256', '0.5', '0.01', '0.02']
    """
    ttfts, gaps, cost, sentences = samples
    return [model, ",".join(map(repr, ttfts)), repr(cost) if cost else "", str(TTFT_SAMPLES), str(GAP_SAMPLES),
            ",".join(map(repr, sentences)), *map(repr, gaps)]


def merge_args(model: str, channel: str, view: SharedState) -> list[str]:
    """:data:`MERGE`'s arguments for re-seeding ``model`` from a process's local ``view``."""
    return [model, channel, str(view.failures), repr(view.open_until), repr(view.failed_at), view.reason or "",
            repr(view.told_until), str(view.total_failures), "1" if view.tool_less else "0"]

-- Commit a batch of jobs' new states, and their events, atomically and in order. Each commit
-- was computed from its job's version: one whose job moved on since (another instance) writes
-- nothing and is refused, and so is every later commit of that job in the batch; the caller
-- recomputes them (optimistic concurrency). One call per batch, with the commits as one
-- JSON argument: far cheaper for the caller than a command with 18 arguments per update.
-- KEYS: 1 global stream, 2 all-jobs set, 3 processing zset
-- ARGV: 1 JSON array of commits, each an array of strings:
--   1 job hash, 2 user stream, 3 eventId hash, 4 user's job set,
--   5 expected version ('' = new job), 6 state JSON, 7 event JSON without id ('' = none),
--   8 channel, 9 user stream maxlen, 10 global stream maxlen, 11 job id,
--   12 processing score ('' = not processing), 13 seconds to keep an ended job ('' = keep),
--   14 '1' if the event is progress-only, 15 seq of the job's latest event,
--   16 (an array) eventIds that now resolve to the job's latest event,
--   17 (an array, empty or one) the eventId of the update, if the caller took it to be new:
--      the caller plans from the job as it last saw it, which lists no eventIds
-- Returns, per commit: {1, id of the job's latest event (false: none yet)}, or, refused (the
-- job is not at the expected version, or the eventId is known), {0, the job's version, state
-- and latest event id as they are (false: no such job), what the eventId resolves to (false:
-- unknown)}, for the caller to recompute from.
-- Events go out in id order, consecutive events of one channel in one message, a line each.
local replies = {}
local channel, lines = nil, {}
local function send()
  if channel ~= nil then
    redis.call('PUBLISH', channel, table.concat(lines, '\n'))
  end
  channel, lines = nil, {}
end
for n, c in ipairs(cjson.decode(ARGV[1])) do
  local current = redis.call('HMGET', c[1], 'v', 'id')
  local version = current[1]
  local answered = c[17][1] and redis.call('HGET', c[3], c[17][1])
  if (version or '') ~= c[5] or answered then
    replies[n] = {0, version, redis.call('HGET', c[1], 's'), current[2], answered or false}
  else
    local id = current[2]
    if c[7] ~= '' then
      id = redis.call('XADD', KEYS[1], 'MAXLEN', c[10], '*', 'e', c[7], 'p', c[14])
      redis.call('XADD', c[2], 'MAXLEN', c[9], id, 'e', c[7], 'p', c[14])
      if channel ~= c[8] then
        send()
        channel = c[8]
      end
      lines[#lines + 1] = id .. ' ' .. c[14] .. ' ' .. c[7]
    end
    redis.call('HSET', c[1], 'v', (tonumber(version) or 0) + 1, 's', c[6], 'id', id or '')
    for _, eid in ipairs(c[16]) do
      redis.call('HSET', c[3], eid, id .. ' ' .. c[15])
    end
    if c[5] == '' then
      redis.call('SADD', c[4], c[11])
      redis.call('SADD', KEYS[2], c[11])
    end
    if c[12] ~= '' then
      redis.call('ZADD', KEYS[3], c[12], c[11])
    else
      redis.call('ZREM', KEYS[3], c[11])
    end
    if c[13] ~= '' then
      redis.call('EXPIRE', c[1], c[13])
      redis.call('EXPIRE', c[3], c[13])
    end
    replies[n] = {1, id or false}
  end
end
send()
return replies

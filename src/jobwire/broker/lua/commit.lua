-- Commit one job's new state, and its event if it has one, atomically.
-- The caller computed the new state from version ARGV[1]; if the job moved on since, nothing
-- is written and {0} comes back, and the caller recomputes (optimistic concurrency).
-- KEYS: 1 job hash, 2 global stream, 3 user stream, 4 eventId hash, 5 user's job set,
--       6 all-jobs set, 7 processing zset
-- ARGV: 1 expected version ('' = new job), 2 state JSON, 3 event JSON without id ('' = none),
--       4 channel, 5 user stream maxlen, 6 global stream maxlen, 7 job id,
--       8 processing score ('' = not processing), 9 seconds to keep an ended job ('' = keep),
--       10 '1' if the event is progress-only, 11 seq of the job's latest event,
--       12.. eventIds that now resolve to the job's latest event
local version = redis.call('HGET', KEYS[1], 'v')
if (version or '') ~= ARGV[1] then
  return {0}
end
local id = redis.call('HGET', KEYS[1], 'id')
if ARGV[3] ~= '' then
  id = redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[6], '*', 'e', ARGV[3], 'p', ARGV[10])
  redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[5], id, 'e', ARGV[3], 'p', ARGV[10])
  redis.call('PUBLISH', ARGV[4], id .. ' ' .. ARGV[10] .. ' ' .. ARGV[3])
end
redis.call('HSET', KEYS[1], 'v', (tonumber(version) or 0) + 1, 's', ARGV[2], 'id', id or '')
for i = 12, #ARGV do
  redis.call('HSET', KEYS[4], ARGV[i], id .. ' ' .. ARGV[11])
end
if ARGV[1] == '' then
  redis.call('SADD', KEYS[5], ARGV[7])
  redis.call('SADD', KEYS[6], ARGV[7])
end
if ARGV[8] ~= '' then
  redis.call('ZADD', KEYS[7], ARGV[8], ARGV[7])
else
  redis.call('ZREM', KEYS[7], ARGV[7])
end
if ARGV[9] ~= '' then
  redis.call('EXPIRE', KEYS[1], ARGV[9])
  redis.call('EXPIRE', KEYS[4], ARGV[9])
end
return {1, id or false}

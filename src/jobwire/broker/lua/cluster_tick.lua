-- A partition's clock, told on its channel: "every event of this partition up to here has
-- been sent before this message". Moves an idle clock to now first, so that later ids are
-- at least now: admins' merged feed can then release what other partitions sent meanwhile.
-- KEYS: 1 clock hash. ARGV: 1 the partition's channel.
-- The message: 'tick <ms> <k>', the clock's millisecond and ids issued in it less one.
local clock = redis.call('HMGET', KEYS[1], 'ms', 'k')
local ms, k = tonumber(clock[1]) or 0, tonumber(clock[2]) or -1
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now > ms then
  ms, k = now, -1
  redis.call('HSET', KEYS[1], 'ms', string.format('%d', ms), 'k', '-1')
end
redis.call('SPUBLISH', ARGV[1], string.format('tick %d %d', ms, k))
return {string.format('%d', ms), k}

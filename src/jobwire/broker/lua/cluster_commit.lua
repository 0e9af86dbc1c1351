-- The Redis Cluster commit: commit.lua's work for the jobs of one partition (one slot), with
-- ids issued here from the partition's clock instead of a stream's `*`, so that ids of
-- different partitions never collide and still sort by time: `<ms>-<k * P + p>`, where k
-- counts the ids issued in that millisecond and p is the partition (of P).
-- KEYS: 1 partition stream, 2 partition's job set, 3 processing zset, 4 clock hash
-- ARGV: 1 JSON array of commits (laid out as in commit.lua; field 8 is the user's channel),
--   2 partition index, 3 partition count, 4 the partition's channel
-- Every event goes out on its user's channel (consecutive events of one user in one message)
-- and on the partition's channel (all of the call's events in one message), a line each.
local p, count = tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('HMGET', KEYS[4], 'ms', 'k')
local ms, k = tonumber(clock[1]) or 0, tonumber(clock[2]) or -1
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local issued = false
local replies, all = {}, {}
local channel, lines = nil, {}
local function send()
  if channel ~= nil then
    redis.call('SPUBLISH', channel, table.concat(lines, '\n'))
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
      if now > ms then ms, k = now, 0 else k = k + 1 end
      issued = true
      id = string.format('%d-%d', ms, k * count + p)
      redis.call('XADD', KEYS[1], 'MAXLEN', c[10], id, 'e', c[7], 'p', c[14])
      redis.call('XADD', c[2], 'MAXLEN', c[9], id, 'e', c[7], 'p', c[14])
      if channel ~= c[8] then
        send()
        channel = c[8]
      end
      local line = id .. ' ' .. c[14] .. ' ' .. c[7]
      lines[#lines + 1] = line
      all[#all + 1] = line
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
if #all > 0 then
  redis.call('SPUBLISH', ARGV[4], table.concat(all, '\n'))
end
if issued then
  redis.call('HSET', KEYS[4], 'ms', string.format('%d', ms), 'k', string.format('%d', k))
end
return replies

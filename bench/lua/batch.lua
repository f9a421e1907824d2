-- POST /v1/commands:batch: 1,000 registrations (fresh pilgrims) a request, key BENCH_KEY.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")
local headers = {["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY"), ["Content-Type"] = "application/json"}
init = function(args) common.seed() end
request = function()
  local now = common.now()
  local items = {}
  for i = 1, 1000 do
    items[i] = '{"event": "Registered", "occurred_at": "' .. now .. '", "pilgrim_id": "' .. common.uuid4() ..
      '", "season": 1446, "country": "IDN"}'
  end
  return wrk.format("POST", "/v1/commands:batch", headers, '{"commands": [' .. table.concat(items, ", ") .. ']}')
end
done = common.done

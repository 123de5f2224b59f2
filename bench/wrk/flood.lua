-- Scenario 8 of bench/run.py: a flood of distinct cache keys with large answers (lists of
-- every entity, every tenant, random equality filters and limit=1..200), to show that L1 stays
-- within CACHE_L1_MAX_MB and the process's RSS with it. No `q`, so every miss is an index scan.
-- Needs common.lua (and the generated tenant chunk) before it.
request = function()
  local tenant = pick(BENCH_TENANTS)
  local entity = pick(ENTITY_NAMES)
  local path = "/api/v2/" .. entity .. "?limit=" .. math.random(1, 200)
  if math.random() < 0.7 then path = path .. "&" .. equality_filter(entity, tenant) end
  return wrk.format("GET", path, tenant.read_headers)
end

-- Scenario 6 of bench/run.py: mixed traffic over 20 tenants with Zipf-like popularity
-- (tenant of rank k is chosen with weight 1/k^ZIPF_S); 95 % reads of lists, counts, stats and
-- bundles with varied filters, 5 % writes (PATCH of an opportunity's amount, POST of a lead).
-- Needs common.lua (and the generated tenant chunk) before it.
ZIPF_S = ZIPF_S or 1.0
LEAD_SOURCE = LEAD_SOURCE or "bench-mixed"  -- set per run by bench/run.py, which deletes them after
WRITE_SHARE = WRITE_SHARE or 0.05

local cumulative, total = {}, 0
for rank = 1, #BENCH_TENANTS do
  total = total + 1 / rank ^ ZIPF_S
  cumulative[rank] = total
end
for rank = 1, #cumulative do cumulative[rank] = cumulative[rank] / total end

local function pick_tenant()
  local r = math.random()
  for rank = 1, #cumulative do
    if r <= cumulative[rank] then return BENCH_TENANTS[rank] end
  end
  return BENCH_TENANTS[#BENCH_TENANTS]
end

-- opportunities are read twice as often as each other entity
local READ_ENTITIES = { "opportunities", "opportunities", "accounts", "contacts", "leads", "activities" }
local LIMITS = { "limit=10", "limit=25", "limit=100" }

local function list_or_count_query(entity, tenant, is_list)
  local parts = {}
  local r = math.random()
  if r < 0.55 then
    -- no filter
  elseif r < 0.90 then
    parts[#parts + 1] = equality_filter(entity, tenant)
  else
    parts[#parts + 1] = "q=" .. pick(ENTITIES[entity].q)
  end
  if is_list then
    if math.random() < 0.3 then parts[#parts + 1] = pick(LIMITS) end -- else the default (50)
  end
  if #parts == 0 then return "" end
  return "?" .. table.concat(parts, "&")
end

local lead_number = 0

request = function()
  local tenant = pick_tenant()
  local r = math.random()
  if r < WRITE_SHARE then
    if math.random() < 0.6 then
      local id = pick(tenant.opportunities)
      local body = string.format('{"amount": %d.%02d}', math.random(1000, 250000), math.random(0, 99))
      return wrk.format("PATCH", "/api/v2/opportunities/" .. id, tenant.write_headers, body)
    end
    lead_number = lead_number + 1
    local body = string.format(
      '{"first_name": "Bench", "last_name": "Mixed %d-%d", "source": "%s", "score": %d}',
      thread_number or 0, lead_number, LEAD_SOURCE, math.random(0, 100))
    return wrk.format("POST", "/api/v2/leads", tenant.write_headers, body)
  end
  r = math.random()
  local path
  if r < 0.40 then
    local entity = pick(READ_ENTITIES)
    path = "/api/v2/" .. entity .. list_or_count_query(entity, tenant, true)
  elseif r < 0.65 then
    local entity = pick(READ_ENTITIES)
    path = "/api/v2/" .. entity .. "/count" .. list_or_count_query(entity, tenant, false)
  elseif r < 0.80 then
    path = "/api/v2/opportunities/stats"
    if math.random() < 0.25 then path = path .. "?account_id=" .. pick(tenant.accounts) end
  else
    path = "/api/v2/dashboard/bundle"
  end
  return wrk.format("GET", path, tenant.read_headers)
end

-- Argo CD health check for every iamwright kind (Lua 5.1, no string library).
-- Stalled=True -> Degraded; Ready=True for the current generation -> Healthy;
-- anything else (no status yet, Reconciling, a stale observedGeneration) -> Progressing.
local hs = { status = "Progressing", message = "Waiting for the iamwright operator" }
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= generation then
  hs.message = "Waiting for the operator to observe the latest spec"
  return hs
end
local ready = nil
local stalled = nil
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Ready" then
    ready = c
  elseif c.type == "Stalled" then
    stalled = c
  end
end
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = (stalled.reason or "Stalled") .. ": " .. (stalled.message or "")
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
elseif ready ~= nil then
  hs.message = (ready.reason or "NotReady") .. ": " .. (ready.message or "")
end
return hs

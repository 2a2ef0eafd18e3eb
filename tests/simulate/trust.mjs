// Evaluates AssumeRole* requests against a role's trust policy with a real IAM
// evaluation engine (@cloud-copilot/iam-simulate), for tests/trust_policy.rs.
// usage: node trust.mjs INSTALL_DIR < {"policy": {...}, "role": ARN, "requests":
//   [{name, principal, action, context}]}   prints {"name": "...", "result": ...} per line.
//
// It calls the engine's core (`authorize`) rather than `runSimulation`: the latter
// drops context keys the service catalog does not list for the action, and an OIDC
// provider's `<issuer>:sub` / `:aud` keys are not listed for
// sts:AssumeRoleWithWebIdentity (an EKS issuer has a path), so IRSA conditions would
// never match. `runUnsafeSimulation` skips that filter but fails on an unnamed resource
// policy (0.1.173); this is the same call with the policy named. Strict mode: a key
// missing from the request fails its condition, as in AWS.
import { createRequire } from 'node:module'
import { join } from 'node:path'

const dir = process.argv[2]
const engine = join(dir, 'node_modules/@cloud-copilot/iam-simulate/dist/cjs')
const require = createRequire(join(engine, 'index.js'))
const { loadPolicy } = require('@cloud-copilot/iam-policy')
const { authorize } = require(join(engine, 'core_engine/CoreSimulatorEngine.js'))
const { AwsRequestImpl } = require(join(engine, 'request/request.js'))
const { RequestContextImpl } = require(join(engine, 'requestContext.js'))
const { DiscoveryContextKeyConstraints } = require(
  join(engine, 'context_keys/discoveryContextKeyConstraints.js')
)

let input = ''
for await (const chunk of process.stdin) input += chunk
const { policy, role, requests } = JSON.parse(input)
const accountId = role.split(':')[4]
for (const r of requests) {
  const request = new AwsRequestImpl(
    r.principal,
    { resource: role, accountId },
    r.action,
    new RequestContextImpl(r.context ?? {})
  )
  const analysis = authorize({
    request,
    sessionPolicy: undefined,
    identityPolicies: [],
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    resourcePolicy: loadPolicy(policy, { name: 'trust' }),
    permissionBoundaries: undefined,
    vpcEndpointPolicies: undefined,
    simulationParameters: {
      simulationMode: 'Strict',
      discoveryContextKeyConstraints: new DiscoveryContextKeyConstraints([])
    },
    serviceSettings: { s3: {} }
  })
  console.log(JSON.stringify({ name: r.name, result: analysis.result }))
}

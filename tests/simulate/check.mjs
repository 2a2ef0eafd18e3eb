// Evaluates AWS requests against the operator's own IAM policy with a real IAM
// evaluation engine (@cloud-copilot/iam-simulate), for tests/trust_policy.rs.
// usage: node check.mjs INSTALL_DIR < {"policy": {...}, "requests": [{name, action,
//   resource, context}]}   prints {"name": "...", "result": "Allowed" | ...} per line.
import { createRequire } from 'node:module'
import { join } from 'node:path'

const dir = process.argv[2]
const require = createRequire(join(dir, 'package.json'))
const { runSimulation } = require('@cloud-copilot/iam-simulate')

let input = ''
for await (const chunk of process.stdin) input += chunk
const { policy, requests } = JSON.parse(input)
for (const r of requests) {
  const response = await runSimulation(
    {
      identityPolicies: [{ name: 'operator', policy }],
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      request: {
        action: r.action,
        principal: 'arn:aws:iam::123456789012:role/iamwright',
        resource: { accountId: '123456789012', resource: r.resource },
        contextVariables: r.context ?? {}
      }
    },
    {}
  )
  const result =
    response.resultType === 'error'
      ? 'Error: ' + JSON.stringify(response.errors)
      : response.overallResult
  console.log(JSON.stringify({ name: r.name, result }))
}

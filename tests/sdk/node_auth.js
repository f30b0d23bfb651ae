#!/usr/bin/env node
// Gets a bearer token the way an unmodified Node program using IBM's SDK core
// does: the authenticator comes from the environment alone
// (<SERVICE>_AUTH_TYPE, <SERVICE>_AUTH_URL, <SERVICE>_CR_TOKEN_FILENAME,
// <SERVICE>_IAM_PROFILE_ID|CRN|NAME, <SERVICE>_SERVICE_VERSION). Prints only
// the SHA-256 (hex) of the token, never the token; errors go to stderr.
// With IAMTOK_SDK_TIMING=1 it also prints authenticate_ms=N (the call alone,
// without the process start) to stderr, for bench/run.sh.
// Usage: node node_auth.js SERVICE_NAME
'use strict';

const crypto = require('crypto');
const { getAuthenticatorFromEnvironment } = require('ibm-cloud-sdk-core');

async function main() {
  const service = process.argv[2];
  if (!service) {
    throw new Error('usage: node_auth.js SERVICE_NAME');
  }
  const authenticator = getAuthenticatorFromEnvironment(service);
  const request = { headers: {} };
  const start = process.hrtime.bigint();
  await authenticator.authenticate(request);
  if (process.env.IAMTOK_SDK_TIMING === '1') {
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    process.stderr.write(`authenticate_ms=${ms.toFixed(2)}\n`);
  }
  const header = request.headers.Authorization || '';
  if (!header.startsWith('Bearer ') || header.length === 'Bearer '.length) {
    throw new Error('the authenticator set no bearer token');
  }
  const token = header.slice('Bearer '.length);
  process.stdout.write(`${crypto.createHash('sha256').update(token).digest('hex')}\n`);
}

main().catch((error) => {
  // SDK errors carry the status and the endpoint's error body, never a token.
  process.stderr.write(`node_auth: ${error.status ? `HTTP ${error.status}: ` : ''}${error.message}\n`);
  process.exit(1);
});

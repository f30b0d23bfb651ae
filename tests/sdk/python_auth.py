#!/usr/bin/python3
"""Gets a bearer token the way an unmodified Python program using IBM's SDK
core does: the authenticator comes from the environment alone
(<SERVICE>_AUTH_TYPE, <SERVICE>_AUTH_URL, <SERVICE>_CR_TOKEN_FILENAME,
<SERVICE>_IAM_PROFILE_ID|CRN|NAME). Prints only the SHA-256 (hex) of the
token, never the token; errors go to stderr.

Usage: python_auth.py SERVICE_NAME
"""
import hashlib
import sys

from ibm_cloud_sdk_core import get_authenticator_from_environment


def main() -> int:
    if len(sys.argv) != 2:
        print('usage: python_auth.py SERVICE_NAME', file=sys.stderr)
        return 64
    try:
        authenticator = get_authenticator_from_environment(sys.argv[1])
        if authenticator is None:
            raise ValueError('no authenticator configured in the environment')
        request = {'headers': {}}
        authenticator.authenticate(request)
    except Exception as error:  # pylint: disable=broad-except
        # SDK errors carry the status and the endpoint's error body, never a token.
        code = getattr(error, 'code', None)
        print(f'python_auth: {"HTTP %s: " % code if code else ""}{error}', file=sys.stderr)
        return 1
    header = request['headers'].get('Authorization', '')
    if not header.startswith('Bearer ') or len(header) == len('Bearer '):
        print('python_auth: the authenticator set no bearer token', file=sys.stderr)
        return 1
    token = header[len('Bearer '):]
    print(hashlib.sha256(token.encode('utf-8')).hexdigest())
    return 0


if __name__ == '__main__':
    sys.exit(main())

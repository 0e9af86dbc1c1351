"use strict";
// jobwire tokens for the test scripts: minted from the server's secret (HS256/384/512, as
// `jobwire token` does), or read from a token given to us, whose claims say who it is for.

const crypto = require("node:crypto");

const HMAC = { HS256: "sha256", HS384: "sha384", HS512: "sha512" };

function b64url(data) {
  return Buffer.from(data).toString("base64url");
}

/** The signing algorithm the server verifies with (JOBWIRE_JWT_ALGORITHM, default HS256), if
 *  this script can mint with a secret; null for RS and ES keys. */
function hmacAlgorithm(env = process.env) {
  const alg = (env.JOBWIRE_JWT_ALGORITHM || "HS256").toUpperCase();
  return HMAC[alg] ? alg : null;
}

/** A token for `sub` with `role`, valid `ttl` seconds, signed with `secret`. */
function mint(secret, sub, role, ttl = 3600, alg = "HS256") {
  const now = Math.floor(Date.now() / 1000);
  const head = b64url(JSON.stringify({ alg, typ: "JWT" }));
  const body = b64url(JSON.stringify({ sub, role, iat: now, exp: now + ttl }));
  const signature = crypto.createHmac(HMAC[alg], secret).update(`${head}.${body}`).digest();
  return `${head}.${body}.${b64url(signature)}`;
}

/** A token's claims, unverified (the server verifies; this only reads whom it names), or
 *  null if it is not a JWT. */
function claims(token) {
  const parts = String(token).split(".");
  if (parts.length !== 3) return null;
  try {
    const payload = JSON.parse(Buffer.from(parts[1], "base64url").toString("utf8"));
    return payload && typeof payload === "object" ? payload : null;
  } catch {
    return null;
  }
}

module.exports = { mint, claims, hmacAlgorithm };

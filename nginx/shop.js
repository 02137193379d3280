// The customer a request is about, as the gateway's hash key: every request of one customer
// reaches the same replica of a service, where their cart actor lives. Run by njs (js_set).
//
// - /carts/<id>/… and /internal/carts/<id>/…: the cart's owner, whoever asks (an admin, or the
//   order service taking ordered lines out);
// - otherwise the subject of a customer's or admin's bearer token. The token is not verified
//   here (the service does that): a forged one only picks a replica;
// - otherwise (no token, a service token) the request id, which spreads requests evenly.
var CART_PATH = /^\/(?:internal\/)?carts\/([0-9A-Fa-f-]{36})(?:\/|$)/;

function customer(r) {
    var cart = r.uri.match(CART_PATH);
    if (cart) {
        return cart[1].toLowerCase();
    }
    var authorization = r.headersIn.Authorization || '';
    if (authorization.substring(0, 7) === 'Bearer ') {
        var parts = authorization.substring(7).split('.');
        if (parts.length === 3) {
            try {
                var claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString());
                if (typeof claims.sub === 'string' && claims.role !== 'service') {
                    return claims.sub;
                }
            } catch (e) {
                // Not a token we can read: treated as anonymous.
            }
        }
    }
    return r.variables.request_id;
}

// The request's id: the client's X-Request-ID when it looks like an id, else the trace id of the
// client's traceparent (so the request and its trace share an id), else nginx's own.
var REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;
var TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/;

function request_id(r) {
    var given = r.headersIn['X-Request-ID'];
    if (given && REQUEST_ID.test(given)) {
        return given;
    }
    var parent = (r.headersIn.traceparent || '').match(TRACEPARENT);
    if (parent && parent[1] !== '00000000000000000000000000000000') {
        return parent[1];
    }
    return r.variables.request_id;
}

export default { customer, request_id };

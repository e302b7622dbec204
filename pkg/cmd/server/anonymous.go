package server

import (
	"net/http"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
)

// healthPaths are the only paths served to requests without credentials:
// kubelet probes carry none.
var healthPaths = map[string]bool{"/healthz": true, "/livez": true, "/readyz": true}

// refuseAnonymous makes every request without a verified identity fail
// authentication (401), except health checks. The delegated authenticator of
// k8s.io/apiserver always ends in an anonymous fallback, which would turn a
// request with forged X-Remote-User headers and no front-proxy certificate
// into system:anonymous (403 at best) instead of refusing it outright.
func refuseAnonymous(inner authenticator.Request) authenticator.Request {
	if inner == nil {
		return nil
	}
	return authenticator.RequestFunc(func(req *http.Request) (*authenticator.Response, bool, error) {
		resp, ok, err := inner.AuthenticateRequest(req)
		if ok && resp.User.GetName() == user.Anonymous && !healthPaths[req.URL.Path] {
			return nil, false, err
		}
		return resp, ok, err
	})
}

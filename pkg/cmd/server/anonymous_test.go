package server

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/request/anonymous"
	"k8s.io/apiserver/pkg/authentication/user"
)

func TestRefuseAnonymous(t *testing.T) {
	named := authenticator.RequestFunc(func(req *http.Request) (*authenticator.Response, bool, error) {
		if req.Header.Get("Authorization") != "" {
			return &authenticator.Response{User: &user.DefaultInfo{Name: "alice"}}, true, nil
		}
		return anonymous.NewAuthenticator(nil).AuthenticateRequest(req)
	})
	a := refuseAnonymous(named)
	for _, tc := range []struct {
		path, auth string
		ok         bool
	}{
		{"/apis/stargate.io/v1alpha1/hardwares", "", false},
		{"/apis/stargate.io/v1alpha1/hardwares", "Bearer x", true},
		{"/readyz", "", true},
		{"/livez", "", true},
		{"/metrics", "", false},
	} {
		req := httptest.NewRequest("GET", tc.path, nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		if _, ok, _ := a.AuthenticateRequest(req); ok != tc.ok {
			t.Errorf("%s (auth %q): authenticated %v, want %v", tc.path, tc.auth, ok, tc.ok)
		}
	}
}

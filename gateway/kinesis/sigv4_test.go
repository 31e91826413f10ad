package kinesis

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/riffle-streams/riffle/gateway"
)

// signed is a PutRecord request signed by aws-sdk-go-v2's own signer.
func signed(t *testing.T, id, secret, region string, at time.Time, body []byte, edit func(*http.Request)) (*http.Request, []byte) {
	t.Helper()
	r, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:4567/", bytes.NewReader(body))
	r.Header.Set("Content-Type", ContentTypeJSON)
	r.Header.Set("X-Amz-Target", TargetPrefix+"PutRecord")
	h := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: id, SecretAccessKey: secret}, r,
		hex.EncodeToString(h[:]), "kinesis", region, at); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(r)
	}
	return r, body
}

func TestSignaturesVerifiedAsAWSSignsThem(t *testing.T) {
	now := time.Date(2026, 12, 7, 20, 40, 0, 0, time.UTC)
	v := &verifier{creds: Credentials{"AKIDRIFFLE": "right-secret"}, region: "eu-west-1", now: func() time.Time { return now }}
	body := []byte(`{"StreamName":"s","PartitionKey":"k","Data":"eA=="}`)
	for _, tc := range []struct {
		what, id, secret, region string
		at                       time.Time
		edit                     func(*http.Request)
		body                     []byte
		want                     string
	}{
		{what: "a good signature", id: "AKIDRIFFLE", secret: "right-secret", region: "eu-west-1", at: now},
		{what: "4 minutes of skew", id: "AKIDRIFFLE", secret: "right-secret", region: "eu-west-1", at: now.Add(-4 * time.Minute)},
		{what: "a wrong secret", id: "AKIDRIFFLE", secret: "wrong-secret", region: "eu-west-1", at: now, want: InvalidSignature},
		{what: "an unknown key", id: "AKIDOTHER", secret: "right-secret", region: "eu-west-1", at: now, want: UnrecognizedClient},
		{what: "another region", id: "AKIDRIFFLE", secret: "right-secret", region: "us-east-1", at: now, want: InvalidSignature},
		{what: "6 minutes of skew", id: "AKIDRIFFLE", secret: "right-secret", region: "eu-west-1", at: now.Add(6 * time.Minute), want: InvalidSignature},
		{what: "a body changed after signing", id: "AKIDRIFFLE", secret: "right-secret", region: "eu-west-1", at: now,
			body: []byte(`{"StreamName":"s","PartitionKey":"k","Data":"eQ=="}`), want: InvalidSignature},
		{what: "the operation changed after signing", id: "AKIDRIFFLE", secret: "right-secret", region: "eu-west-1", at: now,
			edit: func(r *http.Request) { r.Header.Set("X-Amz-Target", TargetPrefix+"DeleteStream") }, want: InvalidSignature},
		{what: "no signature", id: "AKIDRIFFLE", secret: "right-secret", region: "eu-west-1", at: now,
			edit: func(r *http.Request) { r.Header.Del("Authorization") }, want: MissingAuthenticationToken},
		{what: "a garbled signature", id: "AKIDRIFFLE", secret: "right-secret", region: "eu-west-1", at: now,
			edit: func(r *http.Request) { r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=x") }, want: IncompleteSignature},
		{what: "the target not signed", id: "AKIDRIFFLE", secret: "right-secret", region: "eu-west-1", at: now,
			edit: func(r *http.Request) {
				r.Header.Del("X-Amz-Target")
				h := sha256.Sum256(body)
				v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: "AKIDRIFFLE", SecretAccessKey: "right-secret"}, r,
					hex.EncodeToString(h[:]), "kinesis", "eu-west-1", now)
				r.Header.Set("X-Amz-Target", TargetPrefix+"PutRecord")
			}, want: IncompleteSignature},
	} {
		r, _ := signed(t, tc.id, tc.secret, tc.region, tc.at, body, tc.edit)
		b := body
		if tc.body != nil {
			b = tc.body
		}
		err := v.verify(r, b)
		got := ""
		if err != nil {
			got = gateway.AsError(err).Exception
		}
		if got != tc.want {
			t.Errorf("%s: %v, want %s", tc.what, err, tc.want)
		}
	}

	// Without credentials any well-formed signature passes, and only that.
	dev := &verifier{region: DefaultRegion, now: time.Now}
	r, b := signed(t, "ANYKEY", "any-secret", "ap-south-1", time.Now().Add(-time.Hour), body, nil)
	if err := dev.verify(r, b); err != nil {
		t.Fatalf("development mode refused a signed request: %v", err)
	}
	r.Header.Del("Authorization")
	if err := dev.verify(r, b); err == nil || gateway.AsError(err).Exception != MissingAuthenticationToken {
		t.Fatalf("development mode took an unsigned request: %v", err)
	}
}

func TestLoadCredentials(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials")
	os.WriteFile(path, []byte("# keys\n[default]\naws_access_key_id = AKID1\naws_secret_access_key = s1\n\n[ci]\naws_access_key_id=AKID2\naws_secret_access_key=s2\nregion = x\n"), 0o600)
	creds, err := LoadCredentials(path)
	if err != nil || len(creds) != 2 || creds["AKID1"] != "s1" || creds["AKID2"] != "s2" {
		t.Fatalf("%v, %v", creds, err)
	}
	os.WriteFile(path, []byte("[default]\naws_access_key_id = AKID1\n"), 0o600)
	if _, err := LoadCredentials(path); err == nil {
		t.Fatal("a profile without a secret loaded")
	}
}

// Package e2e holds the browser end-to-end tests of the exporter: they
// build site/ with lorapte.wasm into a temporary folder, serve it on a
// loopback port and drive headless Chromium with chromedp. They are skipped
// when Chromium is missing, unless CI=true (then they fail).
package e2e

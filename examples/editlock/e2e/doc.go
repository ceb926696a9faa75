// Package e2e holds the browser tests of the edit-lock example: real
// headless Chromium, driven by chromedp, against examples/editlock/app.
// It is a module of its own so that chromedp never enters lockkit's
// go.mod.
package e2e

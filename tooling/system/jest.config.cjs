module.exports = require('@repo/jest-presets/node');

// Type-aware lint: in a network server a floating promise is a lost error.
import tseslint from 'typescript-eslint';

// The folders in the order the data flows (docs/architecture.md): each may import only the folders
// before it. bench/ and test/ sit outside the flow and may import anything.
const LAYERS = [
  ['modbus', []],
  ['policy', ['modbus']],
  ['proxy', ['modbus', 'policy']],
  ['demo', ['modbus', 'policy', 'proxy']],
  ['cli', ['modbus', 'policy', 'proxy', 'demo']],
];
const OURS = ['modbus', 'policy', 'proxy', 'demo', 'cli', 'bench', 'test'];
// Only the demo's simulated PLC and HMI run real Modbus libraries; the firewall never does.
const PEER_LIBRARIES = ['jsmodbus', 'modbus-serial'];

const layerRules = LAYERS.map(([folder, allowed]) => {
  const banned = OURS.filter((f) => f !== folder && !allowed.includes(f));
  return {
    files: [`${folder}/**/*.ts`],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: folder === 'demo' ? [] : PEER_LIBRARIES.map((name) => ({ name, message: 'only demo/ may use a Modbus library' })),
          patterns: [
            {
              regex: `^(\\.\\./)+(${banned.join('|')})/`,
              message: `${folder}/ may import only ${allowed.length ? allowed.map((a) => a + '/').join(', ') : 'nothing of ours'} (docs/architecture.md)`,
            },
          ],
        },
      ],
    },
  };
});

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.tap/**', 'coverage/**', 'eslint.config.js'] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  ...layerRules,
);
